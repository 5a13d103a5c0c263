//! A PostgreSQL server that stops answering without closing anything: a network partition
//! that drops packets, or a host frozen with its sockets open. Nothing comes back, not even
//! an error, so the server's own statement bound never reaches the bot; the kernel alone
//! would keep retransmitting for a quarter of an hour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A TCP relay in front of the test server. Made silent, it keeps every socket open and
/// holds whatever it receives, in both directions; made to speak again, it passes on what
/// it held, in order.
struct Relay {
    addr: SocketAddr,
    silent: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = Arc::new(AtomicBool::new(false));
        let s = silent.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                tokio::spawn(pass(from_client, to_server, s.clone()));
                tokio::spawn(pass(from_server, to_client, s.clone()));
            }
        });
        Relay {
            addr,
            silent,
            accept,
        }
    }

    fn silence(&self, on: bool) {
        self.silent.store(on, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pass(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silent: Arc<AtomicBool>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while silent.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `url` with its host and port replaced by the relay's.
fn through(url: &str, relay: &Relay) -> String {
    let mut via = url::Url::parse(url).unwrap();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(relay.addr.port())).unwrap();
    via.to_string()
}

async fn server_of(url: &str) -> SocketAddr {
    let parsed = url::Url::parse(url).unwrap();
    let host = parsed
        .host_str()
        .expect("the PostgreSQL test URL names a TCP host");
    let port = parsed.port().unwrap_or(5432);
    tokio::net::lookup_host((host, port))
        .await
        .unwrap()
        .next()
        .expect("the PostgreSQL test host resolves")
}

/// A read, an audited write and the readiness probe each give up at the store's answer
/// bound, saying the server stopped answering, and the audited write is not confirmed.
/// Once the server answers again the store works on: the audit writer on a new connection,
/// the chain unbroken, nothing of the abandoned group kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_calls_give_up_on_a_silent_server() {
    let name = "store::contract_tests::pg_silence::postgres_calls_give_up_on_a_silent_server";
    let Some(url) = testdb::fresh_postgres_url(name).await else {
        return;
    };
    let relay = Relay::to(server_of(&url).await).await;
    let store = open_store(&through(&url, &relay), PG_BOUND).await.unwrap();
    let row = store
        .insert_request(new_request(T0 + 60_000))
        .await
        .unwrap();
    let first = store.append_audit(entry(1)).await.unwrap();

    relay.silence(true);
    let bound = super::super::pg_writer::answer_bound(PG_BOUND);
    let started = Instant::now();
    let read = store.get_request(row.id).await.unwrap_err();
    assert!(matches!(read, StoreError::Unavailable(_)), "{read:?}");
    assert!(
        read.to_string().contains("sent no answer within 0.6s"),
        "{read}"
    );
    let write = store
        .insert_request_audited(new_request(T0 + 60_000), entry(2))
        .await
        .unwrap_err();
    assert!(matches!(write, StoreError::Unavailable(_)), "{write:?}");
    assert!(write.to_string().contains("not confirmed"), "{write}");
    let probe = store.check_writable(t(T0 + 1)).await.unwrap_err();
    assert!(
        matches!(probe, StoreError::NotWritable(WriteBlock::Timeout)),
        "{probe:?}"
    );
    // Three calls, each given up at the bound, not at the kernel's minutes.
    assert!(started.elapsed() >= 3 * bound, "{:?}", started.elapsed());
    within(started, Duration::from_secs(10));

    relay.silence(false);
    let second = store.append_audit(entry(3)).await.unwrap();
    assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));
    assert_eq!(store.get_request(row.id).await.unwrap().unwrap().id, row.id);
    assert_eq!(store.pending_requests().await.unwrap().len(), 1);
    let report = audit::verify(store.as_ref()).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    store.close().await;
    drop(relay);
    testdb::drop_postgres_database(&url).await;
}
