# Exercises a memcached-compatible server with Dalli (Debian's ruby-dalli,
# 3.0.x), which speaks only the binary protocol: set/get, add/replace,
# incr/decr with an initial value, get_multi (getkq + noop), delete,
# append/prepend, cas, touch and gat, flush, version and stats.
#
#   ruby tests/ruby/dalli_binary_exercise.rb <port>
#
# Prints one line per check and exits 1 if any check fails. Keys carry a
# per-run prefix, so the script can run against a server with other data.
require "dalli"
require "logger"

port = Integer(ARGV.fetch(0) { abort "usage: #{$PROGRAM_NAME} <port>" })
Dalli.logger = Logger.new($stderr, level: Logger::WARN)
client = Dalli::Client.new("127.0.0.1:#{port}", socket_timeout: 5, compress: false)
prefix = "dalli_#{Process.pid}_"
failures = 0

check = lambda do |name, actual, expected|
  if actual == expected
    puts "ok   #{name}: #{actual.inspect}"
  else
    puts "FAIL #{name}: got #{actual.inspect}, expected #{expected.inspect}"
    failures += 1
  end
end

k = ->(name) { "#{prefix}#{name}" }

# set / get, raw strings and marshalled values
check.("set raw", client.set(k.("a"), "hello", 0, raw: true).is_a?(Integer), true)
check.("get raw", client.get(k.("a")), "hello")
check.("set object", client.set(k.("obj"), { "list" => [1, 2, 3] }).is_a?(Integer), true)
check.("get object", client.get(k.("obj")), { "list" => [1, 2, 3] })
check.("get missing", client.get(k.("missing")), nil)
check.("binary value", client.set(k.("bin"), "\x00\x81\r\n".b, 0, raw: true).is_a?(Integer), true)
check.("get binary value", client.get(k.("bin")), "\x00\x81\r\n".b)

# add / replace
check.("add existing", client.add(k.("a"), "x", 0, raw: true), false)
check.("add missing", client.add(k.("added"), "x", 0, raw: true).is_a?(Integer), true)
# Dalli 3.0 returns the cas of a "Not found" response (0) for a failed replace.
check.("replace missing", client.replace(k.("nope"), "x", 0, raw: true), 0)
check.("replace existing", client.replace(k.("added"), "y", 0, raw: true).is_a?(Integer), true)
check.("get replaced", client.get(k.("added")), "y")

# incr / decr with an initial value (binary incr extras: delta, initial, exptime)
check.("incr missing without default", client.incr(k.("n0"), 1), nil)
check.("incr missing with default 10", client.incr(k.("n"), 5, 0, 10), 10)
check.("incr existing", client.incr(k.("n"), 5, 0, 10), 15)
check.("decr existing", client.decr(k.("n"), 20, 0, 10), 0)
check.("decr missing with default 7", client.decr(k.("m"), 1, 0, 7), 7)
check.("get counter as text", client.get(k.("m"), raw: true), "7")

# get_multi (getkq for every key, then noop)
client.set(k.("m1"), "one", 0, raw: true)
client.set(k.("m2"), "two", 0, raw: true)
multi = client.get_multi(k.("m1"), k.("m2"), k.("m3"))
check.("get_multi", multi, { k.("m1") => "one", k.("m2") => "two" })

# delete
check.("delete existing", client.delete(k.("m1")), true)
# ... and nil (not found) for a failed delete.
check.("delete missing", client.delete(k.("m1")), nil)
check.("get deleted", client.get(k.("m1")), nil)

# append / prepend (raw values only)
client.set(k.("s"), "mid", 0, raw: true)
check.("append", client.append(k.("s"), "-end"), true)
check.("prepend", client.prepend(k.("s"), "start-"), true)
check.("get appended", client.get(k.("s")), "start-mid-end")
check.("append missing", client.append(k.("nothing"), "x"), false)

# cas: get with the cas unique, then a set carrying it in the header
client.set(k.("c"), "v1", 0, raw: true)
check.("cas block", client.cas(k.("c")) { |value| "#{value}+v2" }.is_a?(Integer), true)
check.("get after cas", client.get(k.("c")), "v1+v2")
value, cas = client.get_cas(k.("c"))
check.("get_cas value", value, "v1+v2")
check.("set_cas matching", client.set_cas(k.("c"), "v3", cas, 0, raw: true).is_a?(Integer), true)
check.("set_cas stale", client.set_cas(k.("c"), "v4", cas, 0, raw: true), false)
check.("get after set_cas", client.get(k.("c")), "v3")
check.("cas on a missing key", client.cas(k.("no_such")) { |v| v }, nil)

# touch and gat (binary touch 0x1c, gat 0x1d)
client.set(k.("t"), "touchme", 0, raw: true)
check.("touch", client.touch(k.("t"), 100), true)
check.("touch missing", client.touch(k.("t_missing"), 100), nil)
check.("gat", client.gat(k.("t"), 100), "touchme")
check.("gat missing", client.gat(k.("t_missing"), 100), nil)

# version and stats (one server)
versions = client.version
check.("version answered", versions.values.first.is_a?(String) && !versions.values.first.empty?, true)
stats = client.stats.values.first
check.("stats has curr_items", stats.key?("curr_items"), true)

# flush (all keys): run last
check.("flush", client.flush.all?, true)
check.("get after flush", client.get(k.("a")), nil)

client.close
if failures.zero?
  puts "all dalli checks passed"
else
  puts "#{failures} dalli checks failed"
  exit 1
end
