//! The event path's own connection to one Redis server (the wire connection): each batch's
//! commands go out as one buffer ([`Commands`]) and come back as the bytes of their replies,
//! read in place ([`Replies`]) — no command objects, no reply trees, no channel per command.
//!
//! The event path sends few kinds of command, many at a time (the bindings, the claims, the
//! `sent` marks of a batch of events), and through the client's connection each one cost a
//! command object of its own, a parsed reply tree and the owned strings copied out of it:
//! about half of callpush's allocations per push and a third of its CPU
//! (docs/benchmarks.md, "A Redis path of its own"). Everything else (scripts being loaded,
//! streams, registrations, every command on a cluster) stays with the client.
//!
//! It keeps the client connection's rules: the same address, user, password and database; a
//! batch waits at most as long as a short command ([`super::RESPONSE_TIMEOUT`]); a connection
//! that fails or times out is dropped with every batch it carried (they fail alike, as a
//! pipeline's commands do) and the next batch connects again. Only plain TCP with RESP2 (the
//! default) is served this way: for `rediss://`, a unix socket or `protocol=resp3` there is no
//! wire connection ([`WireConn::for_info`]) and the callers use the client's.

mod resp;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub use resp::{digits, server_error, Commands, Items, Replies, Reply};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

/// One batch on its way: its bytes, how many replies it is owed, and where they go.
struct Request {
    bytes: Bytes,
    count: usize,
    answer: oneshot::Sender<Result<Replies, RedisError>>,
}

/// A live connection: the task that owns the socket, fed by `requests`.
struct Link {
    requests: mpsc::UnboundedSender<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Batches it still carried see their answers dropped: they fail as a broken connection.
        self.task.abort();
    }
}

/// The wire connection to one server; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct WireConn {
    target: Arc<Target>,
    link: Arc<tokio::sync::Mutex<Option<Arc<Link>>>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl std::fmt::Debug for WireConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireConn")
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .finish_non_exhaustive()
    }
}

impl WireConn {
    /// A wire connection to the server `info` names, or `None` when it is not plain TCP with
    /// RESP2 (module docs). Connects at the first batch.
    pub fn for_info(
        info: &ConnectionInfo,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Option<WireConn> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        if settings.protocol() != ProtocolVersion::RESP2 {
            return None;
        }
        Some(WireConn {
            target: Arc::new(Target {
                host: host.clone(),
                port: *port,
                username: settings.username().map(str::to_string),
                password: settings.password().map(str::to_string),
                db: settings.db(),
            }),
            link: Arc::default(),
            connect_timeout,
            response_timeout,
        })
    }

    /// Send `commands` and return their replies, one per command, in order. Fails as a whole
    /// only when the connection does (it could not connect, broke, or answered late); a
    /// command the server refuses is an error reply of its own ([`Reply::ok`]).
    pub async fn send(&self, commands: Commands) -> Result<Replies, RedisError> {
        if commands.is_empty() {
            return Ok(Replies::new(Bytes::new(), 0));
        }
        let count = commands.count();
        let link = self.link().await?;
        let (answer, got) = oneshot::channel();
        let request = Request {
            bytes: commands.into_bytes(),
            count,
            answer,
        };
        if link.requests.send(request).is_err() {
            self.drop_link(&link).await;
            return Err(broken("the connection closed"));
        }
        match tokio::time::timeout(self.response_timeout, got).await {
            Ok(Ok(answer)) => {
                if answer.is_err() {
                    self.drop_link(&link).await;
                }
                answer
            }
            Ok(Err(_)) => {
                self.drop_link(&link).await;
                Err(broken("the connection closed"))
            }
            Err(_) => {
                // A server that does not answer in time is taken for hung: the batches behind
                // this one would wait as long, so the connection goes with it.
                self.drop_link(&link).await;
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "redis did not answer in time",
                )))
            }
        }
    }

    /// The live connection, connecting when there is none (one connect at a time).
    async fn link(&self) -> Result<Arc<Link>, RedisError> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_ref() {
            if !link.requests.is_closed() {
                return Ok(link.clone());
            }
        }
        *slot = None;
        let stream = tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to redis timed out",
                ))
            })??;
        let (requests, inbox) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(stream, inbox));
        let link = Arc::new(Link { requests, task });
        *slot = Some(link.clone());
        Ok(link)
    }

    /// Forget `link` if it is still the current one: the next batch connects again.
    async fn drop_link(&self, link: &Arc<Link>) {
        let mut slot = self.link.lock().await;
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            *slot = None;
        }
    }

    /// A new socket, authenticated and on the right database.
    async fn open(&self) -> Result<TcpStream, RedisError> {
        let t = &self.target;
        let mut stream = TcpStream::connect((t.host.as_str(), t.port)).await?;
        stream.set_nodelay(true)?;
        let mut hello = Commands::with_capacity(128);
        if let Some(password) = &t.password {
            match &t.username {
                Some(user) => hello.command(3).arg("AUTH").arg(user).arg(password),
                None => hello.command(2).arg("AUTH").arg(password),
            };
        }
        if t.db != 0 {
            hello.command(2).arg("SELECT").arg_u64(t.db as u64);
        }
        if !hello.is_empty() {
            let count = hello.count();
            stream.write_all(&hello.into_bytes()).await?;
            let mut buf = BytesMut::with_capacity(256);
            let replies = read_replies(&mut stream, &mut buf, count).await?;
            for reply in replies.iter() {
                reply.ok().map_err(|e| {
                    RedisError::from((
                        redis::ErrorKind::AuthenticationFailed,
                        "redis refused the wire connection's AUTH or SELECT",
                        e.to_string(),
                    ))
                })?;
            }
        }
        Ok(stream)
    }
}

fn broken(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        what,
    ))
}

/// Read exactly `count` replies (used only while connecting, before the socket is shared).
async fn read_replies(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    count: usize,
) -> Result<Replies, RedisError> {
    let mut end = 0;
    let mut found = 0;
    while found < count {
        match resp::reply_end(buf, end).map_err(protocol_error)? {
            Some(next) => {
                end = next;
                found += 1;
            }
            None => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(broken("redis closed the connection"));
                }
            }
        }
    }
    Ok(Replies::new(buf.split_to(end).freeze(), count))
}

fn protocol_error(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "redis answered outside RESP2",
        what.to_string(),
    ))
}

/// Where the batch at the front of the queue stands: replies found so far, and where they end.
#[derive(Default)]
struct Progress {
    found: usize,
    end: usize,
}

/// The connection's task: write each batch as it comes, and hand each its replies as soon as
/// all of them arrived. Ends (failing every batch it carries) when the socket does.
async fn serve(stream: TcpStream, mut inbox: mpsc::UnboundedReceiver<Request>) {
    let (mut reader, mut writer) = stream.into_split();
    let mut waiting: VecDeque<(usize, oneshot::Sender<Result<Replies, RedisError>>)> =
        VecDeque::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut progress = Progress::default();
    let failure = loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            request = inbox.recv() => {
                let Some(request) = request else {
                    return;
                };
                waiting.push_back((request.count, request.answer));
                if let Err(e) = writer.write_all(&request.bytes).await {
                    break RedisError::from(e);
                }
            }
            // Read even with nothing owed, so a connection the server closed while idle ends
            // here rather than with the next batch.
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) => break broken("redis closed the connection"),
                    Ok(_) => {}
                    Err(e) => break RedisError::from(e),
                }
                if waiting.is_empty() {
                    break protocol_error("a reply nothing asked for");
                }
                if let Err(e) = hand_out(&mut buf, &mut waiting, &mut progress) {
                    break e;
                }
            }
        }
    };
    for (_, answer) in waiting {
        let _ = answer.send(Err(failure.clone()));
    }
}

/// Hand every batch at the front whose replies have all arrived its bytes.
fn hand_out(
    buf: &mut BytesMut,
    waiting: &mut VecDeque<(usize, oneshot::Sender<Result<Replies, RedisError>>)>,
    progress: &mut Progress,
) -> Result<(), RedisError> {
    while let Some((count, _)) = waiting.front() {
        let count = *count;
        while progress.found < count {
            match resp::reply_end(buf, progress.end).map_err(protocol_error)? {
                Some(end) => {
                    progress.end = end;
                    progress.found += 1;
                }
                None => return Ok(()),
            }
        }
        let bytes = buf.split_to(progress.end).freeze();
        *progress = Progress::default();
        let (_, answer) = waiting.pop_front().expect("the front batch");
        let _ = answer.send(Ok(Replies::new(bytes, count)));
    }
    Ok(())
}
