//! A `natsu::service` router on a glommio executor of its own thread, for tests that play
//! the gateway's or a browser's part against it.

use std::time::Duration;

use futures::channel::oneshot;
use natsu::client;
use natsu::service::Router;

/// A running service: a router set up by `setup` on its own connection; stopped
/// (connection closed, thread joined) when dropped.
pub struct Service {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Service {
    /// Connect to `url`, let `setup` add routes (queue group `queue` if given), and return
    /// once the subscriptions have reached the broker.
    pub fn start(url: &str, queue: Option<&'static str>, setup: impl FnOnce(&Router) + Send + 'static) -> Service {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let url = url.to_string();
        let thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 << 10)
            .ring_depth(64)
            .spawn(move || async move {
                let nc = client::connect(&url).await.expect("the service connects");
                let router = match queue {
                    Some(q) => Router::with_queue(&nc, q),
                    None => Router::new(&nc),
                };
                setup(&router);
                nc.flush().await.expect("the service's subscriptions reach the broker");
                let _ = ready_tx.send(());
                let _ = stopped.await;
                nc.close().await;
            })
            .expect("start the service's executor");
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the service is ready in time");
        Service { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.expect("the service's executor ends cleanly");
            }
        }
    }
}
