//! A real client against mcstore: runs `tests/python/pymemcache_exercise.py`
//! (pymemcache, `pip install pymemcache`) against a fresh mcstore and requires
//! it to exit 0; its output is shown on failure.
//!
//! Set `PYMEMCACHE_AGAINST_MEMCACHED=1` to run the script against memcached
//! instead (self-check of the script).

use std::time::Duration;

use mcstore_e2e::{run_python, Mcstore, Memcached};

/// Upper bound on the script's run time.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn pymemcache_client_exercises_every_operation() {
    let against_memcached =
        std::env::var("PYMEMCACHE_AGAINST_MEMCACHED").is_ok_and(|v| !v.is_empty() && v != "0");
    let (_mcstore, _memcached, port) = if against_memcached {
        let server = Memcached::start();
        let port = server.port();
        (None, Some(server), port)
    } else {
        let server = Mcstore::start(&[]);
        let port = server.port();
        (Some(server), None, port)
    };

    let mut args = vec![port.to_string()];
    if !against_memcached {
        args.push("--mcstore".into());
    }
    match run_python("tests/python/pymemcache_exercise.py", &args, SCRIPT_TIMEOUT) {
        Ok(output) => println!("{output}"),
        Err(failure) => {
            let server_log = _mcstore.as_ref().map(Mcstore::stderr).unwrap_or_default();
            panic!("{failure}\nserver stderr:\n{server_log}")
        }
    }
}
