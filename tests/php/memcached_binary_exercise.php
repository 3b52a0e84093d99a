<?php
// Exercises a memcached-compatible server with PHP's memcached extension
// (Debian's php-memcached, libmemcached underneath) in binary-protocol
// mode: set/get, add/replace, increment/decrement with an initial value,
// getMulti, delete, append/prepend, cas, touch, version and stats.
//
//   php tests/php/memcached_binary_exercise.php <port>
//
// Prints one line per check and exits 1 if any check fails. Keys carry a
// per-run prefix, so the script can run against a server with other data.

if ($argc < 2) {
    fwrite(STDERR, "usage: {$argv[0]} <port>\n");
    exit(2);
}
$port = (int) $argv[1];

$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
// append/prepend need uncompressed values; raw strings keep values readable.
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->setOption(Memcached::OPT_SERIALIZER, Memcached::SERIALIZER_PHP);
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 5000);
$m->setOption(Memcached::OPT_RECV_TIMEOUT, 5000000);
$m->setOption(Memcached::OPT_SEND_TIMEOUT, 5000000);
$m->addServer('127.0.0.1', $port);

$prefix = 'php_' . getmypid() . '_';
$failures = 0;

function check(string $name, $actual, $expected): void
{
    global $failures;
    if ($actual === $expected) {
        echo "ok   $name: ", var_export($actual, true), "\n";
    } else {
        echo "FAIL $name: got ", var_export($actual, true), ", expected ", var_export($expected, true), "\n";
        $failures++;
    }
}

function k(string $name): string
{
    global $prefix;
    return $prefix . $name;
}

// set / get
check('set', $m->set(k('a'), 'hello'), true);
check('get', $m->get(k('a')), 'hello');
check('get missing', $m->get(k('missing')), false);
check('get missing result code', $m->getResultCode(), Memcached::RES_NOTFOUND);
check('set array', $m->set(k('arr'), [1, 2, 3]), true);
check('get array', $m->get(k('arr')), [1, 2, 3]);
check('set binary value', $m->set(k('bin'), "\x00\x81\r\n"), true);
check('get binary value', bin2hex($m->get(k('bin'))), '00810d0a');

// add / replace
check('add existing', $m->add(k('a'), 'x'), false);
// A binary add over an existing key is answered "Data exists for key." (status 2).
check('add existing result code', $m->getResultCode(), Memcached::RES_DATA_EXISTS);
check('add missing', $m->add(k('added'), 'x'), true);
check('replace missing', $m->replace(k('nope'), 'x'), false);
check('replace existing', $m->replace(k('added'), 'y'), true);
check('get replaced', $m->get(k('added')), 'y');

// increment / decrement with an initial value (binary protocol only)
check('increment missing with initial 10', $m->increment(k('n'), 5, 10), 10);
check('increment existing', $m->increment(k('n'), 5, 10), 15);
check('decrement existing', $m->decrement(k('n'), 20, 10), 0);
check('decrement missing with initial 7', $m->decrement(k('m'), 1, 7), 7);
check('increment missing, no initial', $m->increment(k('n0'), 1), false);

// getMulti
$m->set(k('m1'), 'one');
$m->set(k('m2'), 'two');
check('getMulti', $m->getMulti([k('m1'), k('m2'), k('m3')]), [k('m1') => 'one', k('m2') => 'two']);

// delete
check('delete existing', $m->delete(k('m1')), true);
check('delete missing', $m->delete(k('m1')), false);
check('delete missing result code', $m->getResultCode(), Memcached::RES_NOTFOUND);

// append / prepend
$m->set(k('s'), 'mid');
check('append', $m->append(k('s'), '-end'), true);
check('prepend', $m->prepend(k('s'), 'start-'), true);
check('get appended', $m->get(k('s')), 'start-mid-end');
check('append missing', $m->append(k('nothing'), 'x'), false);

// cas: the cas unique from a get, then a set carrying it in the header
$m->set(k('c'), 'v1');
$got = $m->get(k('c'), null, Memcached::GET_EXTENDED);
check('get extended value', $got['value'], 'v1');
check('cas unique is set', is_int($got['cas']) && $got['cas'] > 0, true);
check('cas matching', $m->cas($got['cas'], k('c'), 'v2'), true);
check('cas stale', $m->cas($got['cas'], k('c'), 'v3'), false);
check('cas stale result code', $m->getResultCode(), Memcached::RES_DATA_EXISTS);
check('get after cas', $m->get(k('c')), 'v2');
check('cas on a missing key', $m->cas(12345, k('no_such'), 'v'), false);
check('cas missing result code', $m->getResultCode(), Memcached::RES_NOTFOUND);

// touch
$m->set(k('t'), 'touchme');
check('touch', $m->touch(k('t'), 100), true);
check('touch missing', $m->touch(k('t_missing'), 100), false);
check('get touched', $m->get(k('t')), 'touchme');

// version and stats
$versions = $m->getVersion();
check('version answered', is_array($versions) && count($versions) === 1 && reset($versions) !== '', true);
$stats = $m->getStats();
check('stats has curr_items', is_array($stats) && isset(reset($stats)['curr_items']), true);

if ($failures === 0) {
    echo "all php-memcached checks passed\n";
    exit(0);
}
echo "$failures php-memcached checks failed\n";
exit(1);
