//! Loopback ports without races. A port found free and then let go can be taken by anyone
//! before the one meant to use it binds it, so nothing here hands out a bare "free port":
//! - a server in the test's own process is handed the bound listener ([`listener`]);
//! - a child process, which must bind for itself, is started by [`start_on_a_free_port`],
//!   which starts it again on a new port when its bind lost the race;
//! - a port where nothing listens, for "connection refused" cases, stays bound without
//!   listening for as long as the test holds it ([`ClosedPort`]).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// How many ports a start is tried on before its last failure is returned.
pub const START_ATTEMPTS: usize = 5;

/// A listener on IPv4 loopback, on a port the OS picked; serve on it directly.
pub async fn listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("the OS hands out a loopback port")
}

/// Starts something that binds a port of its own (a child process), on ports the OS just
/// handed out. When `lost_the_port` says a failure was a bind conflict (another process took
/// the port between its release and the bind), the start is tried again on a new port, up to
/// [`START_ATTEMPTS`] times. Any other failure is returned at once.
pub async fn start_on_a_free_port<T, E, F, Fut>(
    mut start: F,
    lost_the_port: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match start(released_port()).await {
            Err(error) if attempt < START_ATTEMPTS && lost_the_port(&error) => attempt += 1,
            outcome => return outcome,
        }
    }
}

/// Whether a process's log or error says its bind found the port taken (the wording of Rust,
/// of Node and of `scripts/azurite.sh`).
pub fn is_bind_conflict(text: &str) -> bool {
    text.contains("already in use") || text.contains("EADDRINUSE")
}

/// A port the OS handed out and this process let go of again: only for
/// [`start_on_a_free_port`], which copes with losing it.
fn released_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("the OS hands out a loopback port")
}

/// A loopback port bound by this process but not listening: connections to it are refused,
/// and no one else can take it while this value lives.
pub struct ClosedPort {
    _socket: TcpSocket,
    address: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind((Ipv4Addr::LOCALHOST, 0).into())
            .expect("the OS hands out a loopback port");
        let address = socket.local_addr().expect("a bound socket has an address");
        Self {
            _socket: socket,
            address,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}
