//! Ordering between two async-nats connections: a [`Probe`] answers requests on one
//! connection, and [`barrier`] asks it from the other until it answers.

use async_nats::{Client, RequestErrorKind};
use futures::StreamExt;
use tokio::time::Instant;

/// Longest a barrier waits for the probe.
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A responder on one client that answers every request on a fresh inbox subject: the far
/// end of a [`barrier`] between two connections.
pub struct Probe {
    pub subject: String,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Start the probe on `client`, after every subscription the test made on it.
    pub async fn start(client: &Client) -> Probe {
        let subject = client.new_inbox();
        let mut sub = client.subscribe(subject.clone()).await.expect("probe subscribe");
        let c = client.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = c.publish(reply, "".into()).await;
                    let _ = c.flush().await;
                }
            }
        });
        Probe { subject, task }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Request `probe` from `from` until it answers. A server handles each connection's
/// commands in order and keeps each publisher's order to each subscriber, so afterwards:
/// every subscription made on the probe's client before the probe started is visible to
/// `from`'s publishes, and every message `from` published before the barrier has reached the
/// probe's client. Until the probe's subscription is visible the server answers
/// no_responders at once, so each retry is a server round trip, not a spin.
pub async fn barrier(from: &Client, probe: &Probe) {
    let deadline = Instant::now() + BARRIER_WAIT;
    for _ in 0..100_000 {
        let answer = tokio::time::timeout_at(deadline, from.request(probe.subject.clone(), "".into())).await.expect("barrier timed out");
        match answer {
            Ok(_) => return,
            Err(e) if e.kind() == RequestErrorKind::NoResponders => continue,
            Err(e) => panic!("barrier request failed: {e:?}"),
        }
    }
    panic!("the probe never became visible");
}
