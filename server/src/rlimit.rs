//! Raising the open-file limit, as memcached does at start: each client
//! connection is a file descriptor, and many systems set a soft limit of 1024.

/// Descriptors kept for everything that is not a client connection: the
/// listener, the log, sled's files, the standard streams.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` so that `max_connections` clients fit
/// (never above the hard limit). Returns the soft limit now in force.
pub fn raise_open_files_for(max_connections: usize) -> std::io::Result<u64> {
    let wanted = max_connections as u64 + RESERVED_DESCRIPTORS;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}
