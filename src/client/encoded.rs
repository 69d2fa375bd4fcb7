//! Typed messages: a [`Connection`] with an [`Encoder`] that turns values into payloads and
//! back, the Rust shape of nats.go's `EncodedConn`.
//!
//! - [`Encoder`] is the conversion, one implementation per type it handles;
//! - [`JsonEncoder`] handles anything serde can (de)serialize, as JSON text;
//! - [`DefaultEncoder`] handles strings and bytes as they are, and numbers and booleans as
//!   their text (`42`, `2.5`, `true`), as nats.go's default encoder;
//! - [`EncodedConnection`] publishes, subscribes, requests and binds glommio channels with
//!   typed values.
//!
//! A delivered message that does not decode is skipped and reported to the connection's
//! error callback as [`Error::Encoding`] (nats.go does the same); a value that does not
//! encode is an error of the call that publishes it.
//!
//! ```no_run
//! use std::time::Duration;
//! use natsu::client::{EncodedConnection, JsonEncoder};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug)]
//! struct Order {
//!     id: u64,
//!     item: String,
//! }
//!
//! # glommio::LocalExecutor::default().run(async {
//! let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
//! let ec = EncodedConnection::new(nc, JsonEncoder);
//! ec.subscribe("orders", |o: Order| println!("order {} for {}", o.id, o.item))?;
//! ec.publish("orders", &Order { id: 7, item: "tea".into() }).await?;
//! ec.drain().await?;
//! # Ok::<(), natsu::client::Error>(()) });
//! ```

use std::cell::{Cell, OnceCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::GlommioError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{Error, Result};
use super::msg::Msg;
use super::{Connection, Subscription};

/// Room in the channel that [`EncodedConnection::bind_send_chan`] makes: enough to batch a
/// burst of values into one write, small enough that a fast producer waits for the socket.
///
/// ```
/// use natsu::client::encoded::SEND_CHAN_CAPACITY;
/// assert_eq!(SEND_CHAN_CAPACITY, 1024);
/// ```
pub const SEND_CHAN_CAPACITY: usize = 1024;

/// Turns values of type `T` into message payloads and back. An encoder type implements it
/// once for each type it handles; [`EncodedConnection`] picks the implementation from the
/// type of the value published or expected.
///
/// Failures are [`Error::Encoding`], with a text that says what was wrong.
///
/// ```
/// use natsu::client::{Encoder, Error, Result};
///
/// /// Celsius on the wire as whole tenths of a degree: "215" is 21.5.
/// struct Tenths;
///
/// impl Encoder<f64> for Tenths {
///     fn encode(&self, v: &f64) -> Result<Vec<u8>> {
///         Ok(((v * 10.0).round() as i64).to_string().into_bytes())
///     }
///     fn decode(&self, data: &[u8]) -> Result<f64> {
///         let text = std::str::from_utf8(data).map_err(|e| Error::Encoding(e.to_string()))?;
///         let n: i64 = text.parse().map_err(|_| Error::Encoding(format!("{text:?} is not tenths")))?;
///         Ok(n as f64 / 10.0)
///     }
/// }
///
/// assert_eq!(Tenths.encode(&21.5)?, b"215");
/// assert_eq!(Tenths.decode(b"215")?, 21.5);
/// assert!(matches!(Tenths.decode(b"warm"), Err(Error::Encoding(_))));
/// # Ok::<(), Error>(())
/// ```
pub trait Encoder<T> {
    /// The payload for `v`.
    ///
    /// ```
    /// use natsu::client::{DefaultEncoder, Encoder};
    /// assert_eq!(DefaultEncoder.encode(&-42i64)?, b"-42");
    /// # Ok::<(), natsu::client::Error>(())
    /// ```
    fn encode(&self, v: &T) -> Result<Vec<u8>>;

    /// The value a payload stands for.
    ///
    /// ```
    /// use natsu::client::{DefaultEncoder, Encoder};
    /// let n: u16 = DefaultEncoder.decode(b"8080")?;
    /// assert_eq!(n, 8080);
    /// # Ok::<(), natsu::client::Error>(())
    /// ```
    fn decode(&self, data: &[u8]) -> Result<T>;
}

/// JSON text through serde, for any `T: Serialize + DeserializeOwned` (nats.go's
/// `JSON_ENCODER`).
///
/// ```
/// use natsu::client::{Encoder, JsonEncoder};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Point {
///     x: i32,
///     y: i32,
/// }
///
/// let wire = JsonEncoder.encode(&Point { x: 1, y: -2 })?;
/// assert_eq!(wire, br#"{"x":1,"y":-2}"#);
/// let back: Point = JsonEncoder.decode(&wire)?;
/// assert_eq!(back, Point { x: 1, y: -2 });
/// # Ok::<(), natsu::client::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonEncoder;

impl<T: Serialize + DeserializeOwned> Encoder<T> for JsonEncoder {
    fn encode(&self, v: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(v).map_err(|e| Error::Encoding(format!("json: {e}")))
    }

    fn decode(&self, data: &[u8]) -> Result<T> {
        serde_json::from_slice(data).map_err(|e| Error::Encoding(format!("json: {e}")))
    }
}

/// Payloads as plain text or raw bytes, as nats.go's default encoder:
///
/// - `String`: its UTF-8 bytes, no quotes (a payload that is not UTF-8 does not decode);
/// - `Vec<u8>` and [`Bytes`]: the bytes as they are;
/// - integers and floats: their decimal text (`-42`, `2.5`, `inf`, `NaN`); decoding parses
///   the text, which may have a leading `+` (nats.go writes one);
/// - `bool`: `true` or `false`; decoding also takes Go's other spellings (`1`, `t`, `T`,
///   `TRUE`, `True`, and the same for false), so values from Go clients read back.
///
/// ```
/// use bytes::Bytes;
/// use natsu::client::{DefaultEncoder, Encoder};
///
/// let e = DefaultEncoder;
/// assert_eq!(e.encode(&"héllo".to_string())?, "héllo".as_bytes());
/// assert_eq!(e.encode(&2.5f64)?, b"2.5");
/// assert_eq!(e.encode(&true)?, b"true");
/// assert_eq!(e.encode(&Bytes::from_static(b"\x00\xff"))?, b"\x00\xff");
/// let n: i32 = e.decode(b"+17")?;
/// assert_eq!(n, 17);
/// let b: bool = e.decode(b"T")?;
/// assert!(b);
/// assert!(Encoder::<u8>::decode(&e, b"256").is_err());
/// # Ok::<(), natsu::client::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultEncoder;

/// A payload in an error text: its start, readable.
fn show(data: &[u8]) -> String {
    const MAX: usize = 32;
    let head = String::from_utf8_lossy(&data[..data.len().min(MAX)]).into_owned();
    if data.len() > MAX {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

fn utf8<'a>(data: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(data).map_err(|e| Error::Encoding(format!("{} is not a {what}: {e}", show(data))))
}

impl Encoder<String> for DefaultEncoder {
    fn encode(&self, v: &String) -> Result<Vec<u8>> {
        Ok(v.as_bytes().to_vec())
    }

    fn decode(&self, data: &[u8]) -> Result<String> {
        utf8(data, "UTF-8 string").map(str::to_owned)
    }
}

impl Encoder<Vec<u8>> for DefaultEncoder {
    fn encode(&self, v: &Vec<u8>) -> Result<Vec<u8>> {
        Ok(v.clone())
    }

    fn decode(&self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(data.to_vec())
    }
}

impl Encoder<Bytes> for DefaultEncoder {
    fn encode(&self, v: &Bytes) -> Result<Vec<u8>> {
        Ok(v.to_vec())
    }

    fn decode(&self, data: &[u8]) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(data))
    }
}

impl Encoder<bool> for DefaultEncoder {
    fn encode(&self, v: &bool) -> Result<Vec<u8>> {
        Ok(if *v { b"true".to_vec() } else { b"false".to_vec() })
    }

    fn decode(&self, data: &[u8]) -> Result<bool> {
        // Go's strconv.ParseBool spellings, which nats.go's decoder accepts.
        match data {
            b"true" | b"True" | b"TRUE" | b"t" | b"T" | b"1" => Ok(true),
            b"false" | b"False" | b"FALSE" | b"f" | b"F" | b"0" => Ok(false),
            _ => Err(Error::Encoding(format!("{} is not a bool", show(data)))),
        }
    }
}

macro_rules! integer_text {
    ($($t:ty),*) => {$(
        impl Encoder<$t> for DefaultEncoder {
            fn encode(&self, v: &$t) -> Result<Vec<u8>> {
                Ok(itoa::Buffer::new().format(*v).as_bytes().to_vec())
            }

            fn decode(&self, data: &[u8]) -> Result<$t> {
                let text = utf8(data, stringify!($t))?;
                text.parse::<$t>()
                    .map_err(|e| Error::Encoding(format!("{} is not a {}: {e}", show(data), stringify!($t))))
            }
        }
    )*};
}

integer_text!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

macro_rules! float_text {
    ($($t:ty),*) => {$(
        impl Encoder<$t> for DefaultEncoder {
            /// Display's shortest text that reads back to the same value, never an exponent
            /// (as Go's `'f', -1` format).
            fn encode(&self, v: &$t) -> Result<Vec<u8>> {
                Ok(v.to_string().into_bytes())
            }

            fn decode(&self, data: &[u8]) -> Result<$t> {
                let text = utf8(data, stringify!($t))?;
                text.parse::<$t>()
                    .map_err(|e| Error::Encoding(format!("{} is not a {}: {e}", show(data), stringify!($t))))
            }
        }
    )*};
}

float_text!(f32, f64);

/// A [`Connection`] that publishes and receives typed values through an encoder `E`.
/// Cloning it is cheap: clones share the connection and the encoder, so a handler can hold
/// one to answer with [`try_publish`](Self::try_publish).
///
/// Everything that spawns work (handlers, channel bindings) must be called on the
/// connection's glommio executor, like the [`Connection`] calls they wrap.
///
/// ```no_run
/// use std::time::Duration;
/// use natsu::client::{EncodedConnection, JsonEncoder};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Add {
///     a: i64,
///     b: i64,
/// }
///
/// # glommio::LocalExecutor::default().run(async {
/// let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
/// let ec = EncodedConnection::new(nc, JsonEncoder);
/// let responder = ec.clone();
/// ec.subscribe_with_reply("math.add", move |_subject, reply, q: Add| {
///     if let Some(reply) = reply {
///         let _ = responder.try_publish(reply, &(q.a + q.b));
///     }
/// })?;
/// let sum: i64 = ec.request("math.add", &Add { a: 2, b: 3 }, Duration::from_secs(1)).await?;
/// assert_eq!(sum, 5);
/// ec.close().await;
/// # Ok::<(), natsu::client::Error>(()) });
/// ```
pub struct EncodedConnection<E> {
    conn: Connection,
    /// Shared with the handler and channel tasks, which outlive any borrow of `self`.
    enc: Rc<E>,
}

impl<E> Clone for EncodedConnection<E> {
    fn clone(&self) -> Self {
        EncodedConnection { conn: self.conn.clone(), enc: self.enc.clone() }
    }
}

impl<E> std::fmt::Debug for EncodedConnection<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedConnection")
            .field("status", &self.conn.status())
            .field("encoder", &std::any::type_name::<E>())
            .finish()
    }
}

/// A decode failure as the error callback sees it: which subject, and why.
fn decode_error(subject: &str, err: Error) -> Error {
    let why = match err {
        Error::Encoding(t) => t,
        e => e.to_string(),
    };
    Error::Encoding(format!("message on {subject:?} did not decode: {why}"))
}

impl<E> EncodedConnection<E> {
    /// Wrap a connection. The connection stays usable on its own (and through
    /// [`connection`](Self::connection)).
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
    /// let ec = EncodedConnection::new(nc.clone(), DefaultEncoder);
    /// ec.publish("greeting", &"hello".to_string()).await?;
    /// nc.publish("greeting", "hello, untyped").await?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn new(conn: Connection, encoder: E) -> EncodedConnection<E> {
        EncodedConnection { conn, enc: Rc::new(encoder) }
    }

    /// The underlying connection: for raw payloads, headers, stats and status.
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.connection().publish("raw", b"\x00\x01").await?;
    /// println!("{:?}", ec.connection().stats());
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The encoder.
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, Encoder, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// let payload = ec.encoder().encode(&vec![1, 2, 3])?;
    /// assert_eq!(payload, b"[1,2,3]");
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn encoder(&self) -> &E {
        &self.enc
    }

    /// Encode `v` and publish it to `subject` (waits only as [`Connection::publish`] does).
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.publish("temps", &vec![20.5, 21.0]).await?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn publish<T>(&self, subject: &str, v: &T) -> Result<()>
    where
        E: Encoder<T>,
    {
        let data = self.enc.encode(v)?;
        self.conn.publish(subject, data).await
    }

    /// Encode `v` and publish it without ever waiting: for handlers, which cannot `.await`.
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// let out = ec.clone();
    /// ec.subscribe("n", move |n: u64| {
    ///     let _ = out.try_publish("n.squared", &(n * n));
    /// })?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn try_publish<T>(&self, subject: &str, v: &T) -> Result<()>
    where
        E: Encoder<T>,
    {
        let data = self.enc.encode(v)?;
        self.conn.try_publish(subject, data)
    }

    /// Encode `v` and publish it with a reply subject.
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.publish_request("jobs", "jobs.done", &("resize".to_string(), 640)).await?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn publish_request<T>(&self, subject: &str, reply: &str, v: &T) -> Result<()>
    where
        E: Encoder<T>,
    {
        let data = self.enc.encode(v)?;
        self.conn.publish_request(subject, reply, data).await
    }

    /// Send `v` as a request and decode the first response, waiting at most `timeout`.
    /// Errors are [`Connection::request`]'s, and [`Error::Encoding`] when the response does
    /// not decode.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// let price: f64 = ec.request("price", &"tea".to_string(), Duration::from_secs(1)).await?;
    /// println!("tea costs {price}");
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn request<T, R>(&self, subject: &str, v: &T, timeout: Duration) -> Result<R>
    where
        E: Encoder<T> + Encoder<R>,
    {
        let data = Encoder::<T>::encode(&*self.enc, v)?;
        let resp = self.conn.request(subject, data, timeout).await?;
        Encoder::<R>::decode(&*self.enc, &resp.data)
    }

    /// Flush the connection (a PING/PONG round trip): see [`Connection::flush`].
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.publish("audit", &"login".to_string()).await?;
    /// ec.flush().await?; // the server has it now
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn flush(&self) -> Result<()> {
        self.conn.flush().await
    }

    /// Close the connection: see [`Connection::close`].
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.close().await;
    /// assert!(ec.connection().is_closed());
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn close(&self) {
        self.conn.close().await
    }

    /// Drain the connection, then close it: see [`Connection::drain`].
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.subscribe("work", |job: String| println!("{job}"))?;
    /// ec.drain().await?; // handlers have seen every message already sent to us
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn drain(&self) -> Result<()> {
        self.conn.drain().await
    }
}

impl<E: 'static> EncodedConnection<E> {
    /// A handler subscription whose handler gets the decoded value with the message it came
    /// in and the subscription itself; a message that does not decode is reported instead.
    fn typed_sub<T, F>(&self, subject: &str, queue: Option<&str>, mut f: F) -> Result<Subscription>
    where
        E: Encoder<T>,
        T: 'static,
        F: FnMut(Option<&Subscription>, &Msg, T) + 'static,
    {
        let enc = self.enc.clone();
        let conn = self.conn.clone();
        // The handler only runs in a task that starts after subscribing returns, so the
        // subscription is always there by then.
        let slot: Rc<OnceCell<Subscription>> = Rc::new(OnceCell::new());
        let me = slot.clone();
        let handler = move |m: Msg| match Encoder::<T>::decode(&*enc, &m.data) {
            Ok(v) => f(me.get(), &m, v),
            Err(e) => conn.inner.report(&conn, me.get(), decode_error(&m.subject, e)),
        };
        let sub = match queue {
            Some(q) => self.conn.queue_subscribe(subject, q, handler)?,
            None => self.conn.subscribe(subject, handler)?,
        };
        let _ = slot.set(sub.clone());
        Ok(sub)
    }

    /// Subscribe with a handler of decoded values, run on this executor for each message
    /// in order.
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// ec.subscribe("temperature", |celsius: f64| println!("{celsius} °C"))?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn subscribe<T: 'static>(&self, subject: &str, mut handler: impl FnMut(T) + 'static) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.typed_sub(subject, None, move |_, _, v| handler(v))
    }

    /// Subscribe with a handler that also gets the message's subject (useful with
    /// wildcards).
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// ec.subscribe_with_subject("sensors.*.temp", |subject: &str, v: f64| println!("{subject}: {v}"))?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn subscribe_with_subject<T: 'static>(
        &self,
        subject: &str,
        mut handler: impl FnMut(&str, T) + 'static,
    ) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.typed_sub(subject, None, move |_, m, v| handler(&m.subject, v))
    }

    /// Subscribe with a handler that also gets the subject and the reply subject: a typed
    /// responder answers on `reply` with [`try_publish`](Self::try_publish).
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// let out = ec.clone();
    /// ec.subscribe_with_reply("double", move |_subject: &str, reply: Option<&str>, n: i64| {
    ///     if let Some(reply) = reply {
    ///         let _ = out.try_publish(reply, &(2 * n));
    ///     }
    /// })?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn subscribe_with_reply<T: 'static>(
        &self,
        subject: &str,
        mut handler: impl FnMut(&str, Option<&str>, T) + 'static,
    ) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.typed_sub(subject, None, move |_, m, v| handler(&m.subject, m.reply.as_deref(), v))
    }

    /// A queue-group member with a handler of decoded values: each message goes to one
    /// member of the group.
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// ec.queue_subscribe("jobs", "workers", |job: (String, u32)| println!("{job:?}"))?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn queue_subscribe<T: 'static>(
        &self,
        subject: &str,
        queue: &str,
        mut handler: impl FnMut(T) + 'static,
    ) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.typed_sub(subject, Some(queue), move |_, _, v| handler(v))
    }

    /// [`subscribe_with_subject`](Self::subscribe_with_subject) as a queue-group member.
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// ec.queue_subscribe_with_subject("logs.>", "indexers", |subject: &str, line: String| {
    ///     println!("{subject}: {line}")
    /// })?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn queue_subscribe_with_subject<T: 'static>(
        &self,
        subject: &str,
        queue: &str,
        mut handler: impl FnMut(&str, T) + 'static,
    ) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.typed_sub(subject, Some(queue), move |_, m, v| handler(&m.subject, v))
    }

    /// [`subscribe_with_reply`](Self::subscribe_with_reply) as a queue-group member: a
    /// typed service with several instances.
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// let out = ec.clone();
    /// ec.queue_subscribe_with_reply("upper", "svc", move |_: &str, reply: Option<&str>, s: String| {
    ///     if let Some(reply) = reply {
    ///         let _ = out.try_publish(reply, &s.to_uppercase());
    ///     }
    /// })?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn queue_subscribe_with_reply<T: 'static>(
        &self,
        subject: &str,
        queue: &str,
        mut handler: impl FnMut(&str, Option<&str>, T) + 'static,
    ) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.typed_sub(subject, Some(queue), move |_, m, v| handler(&m.subject, m.reply.as_deref(), v))
    }

    /// A channel whose values are encoded and published to `subject`, in order, by a task
    /// on this executor. The channel holds [`SEND_CHAN_CAPACITY`] values, so `send().await`
    /// waits while the task is behind.
    ///
    /// The task ends when the sender is dropped (after publishing what was sent) or when
    /// the connection closes; after that, sending fails. A value that does not encode, or
    /// that the connection refuses (over max payload, say), is reported to the error
    /// callback and skipped; an invalid subject is reported once and ends the task.
    ///
    /// ```no_run
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// let tx = ec.bind_send_chan::<(u32, String)>("events");
    /// tx.send((1, "started".into())).await.unwrap();
    /// drop(tx); // the task publishes what is queued, then ends
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn bind_send_chan<T: 'static>(&self, subject: &str) -> LocalSender<T>
    where
        E: Encoder<T>,
    {
        self.bind_send_chan_with_capacity(subject, SEND_CHAN_CAPACITY)
    }

    /// [`bind_send_chan`](Self::bind_send_chan) with a channel of `capacity` values (at
    /// least one).
    ///
    /// ```no_run
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// let tx = ec.bind_send_chan_with_capacity::<u64>("ticks", 16);
    /// for i in 0..100 {
    ///     tx.send(i).await.unwrap();
    /// }
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn bind_send_chan_with_capacity<T: 'static>(&self, subject: &str, capacity: usize) -> LocalSender<T>
    where
        E: Encoder<T>,
    {
        let (tx, rx) = local_channel::new_bounded(capacity.max(1));
        let pump = glommio::spawn_local(send_pump(self.conn.clone(), self.enc.clone(), subject.to_owned(), rx));
        // A second task ends the first when the connection closes. Waiting for the close
        // here, not in the pump's own loop, registers one wake-up for the whole life of the
        // binding instead of one per value.
        let conn = self.conn.clone();
        glommio::spawn_local(async move {
            futures_lite::future::or(pump, conn.closed()).await;
        })
        .detach();
        tx
    }

    /// A subscription whose decoded values go into `tx`. The channel is the only queue
    /// between the subscription and its reader: a value that finds it full is dropped and
    /// reported once per episode as [`Error::SlowConsumer`] (as a slow subscription is);
    /// when the receiver is dropped, the subscription is unsubscribed.
    ///
    /// ```no_run
    /// use glommio::channels::local_channel;
    /// use natsu::client::{DefaultEncoder, EncodedConnection};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, DefaultEncoder);
    /// let (tx, rx) = local_channel::new_bounded::<i64>(1024);
    /// ec.bind_recv_chan("readings", tx)?;
    /// while let Some(v) = rx.recv().await {
    ///     println!("{v}");
    /// }
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn bind_recv_chan<T: 'static>(&self, subject: &str, tx: LocalSender<T>) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.recv_chan(subject, None, tx)
    }

    /// [`bind_recv_chan`](Self::bind_recv_chan) as a queue-group member.
    ///
    /// ```no_run
    /// use glommio::channels::local_channel;
    /// use natsu::client::{EncodedConnection, JsonEncoder};
    /// # glommio::LocalExecutor::default().run(async {
    /// let ec = EncodedConnection::new(natsu::client::connect("127.0.0.1").await?, JsonEncoder);
    /// let (tx, rx) = local_channel::new_bounded::<Vec<String>>(64);
    /// ec.bind_recv_queue_chan("batches", "loaders", tx)?;
    /// let first = rx.recv().await;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn bind_recv_queue_chan<T: 'static>(&self, subject: &str, queue: &str, tx: LocalSender<T>) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        self.recv_chan(subject, Some(queue), tx)
    }

    fn recv_chan<T: 'static>(&self, subject: &str, queue: Option<&str>, tx: LocalSender<T>) -> Result<Subscription>
    where
        E: Encoder<T>,
    {
        let conn = self.conn.clone();
        // Inside a slow-consumer episode: reported once until a value fits again.
        let slow = Cell::new(false);
        self.typed_sub(subject, queue, move |sub, _, v| match tx.try_send(v) {
            Ok(()) => slow.set(false),
            Err(GlommioError::WouldBlock(_)) => {
                if !slow.replace(true) {
                    conn.inner.report(&conn, sub, Error::SlowConsumer);
                }
            }
            // The receiver is gone: nobody will read what comes next.
            Err(_) => {
                if let Some(sub) = sub {
                    let _ = sub.unsubscribe();
                }
            }
        })
    }
}

/// The send task's end of a bound channel. Dropping it (the task ended or was cancelled)
/// empties the channel first: glommio 0.9's `LocalSender::send` waits for room for ever on a
/// full channel whose receiver is gone, while with room it fails at once, which is what a
/// sender on a finished binding should see.
struct Receiving<T>(LocalReceiver<T>);

/// A waker for polling once without wanting to be woken.
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

impl<T> Drop for Receiving<T> {
    fn drop(&mut self) {
        let waker = Waker::from(Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        loop {
            let next = std::pin::pin!(self.0.recv());
            if !matches!(next.poll(&mut cx), Poll::Ready(Some(_))) {
                break;
            }
        }
    }
}

/// The task behind [`EncodedConnection::bind_send_chan`].
async fn send_pump<T, E: Encoder<T>>(conn: Connection, enc: Rc<E>, subject: String, rx: LocalReceiver<T>) {
    let rx = Receiving(rx);
    while let Some(v) = rx.0.recv().await {
        let data = match enc.encode(&v) {
            Ok(d) => d,
            Err(e) => {
                conn.inner.report(&conn, None, e);
                continue;
            }
        };
        match conn.publish(&subject, data).await {
            Ok(()) => {}
            Err(Error::ConnectionClosed) => return,
            Err(e @ Error::BadSubject) => {
                conn.inner.report(&conn, None, e);
                return;
            }
            Err(e) => conn.inner.report(&conn, None, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn round_trip<T, E>(enc: &E, v: T) -> T
    where
        E: Encoder<T>,
    {
        let wire = enc.encode(&v).expect("encode");
        enc.decode(&wire).expect("decode")
    }

    fn encoding_error<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Encoding(t)) => t,
            other => panic!("expected an encoding error, got {other:?}"),
        }
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Order {
        id: u64,
        item: String,
        qty: Option<u32>,
        tags: Vec<String>,
    }

    #[test]
    fn json_round_trips() {
        let o = Order { id: 7, item: "tea \"green\" ☕".into(), qty: None, tags: vec!["a".into(), "b".into()] };
        assert_eq!(round_trip(&JsonEncoder, o.clone()), o);
        assert_eq!(
            JsonEncoder.encode(&o).unwrap(),
            r#"{"id":7,"item":"tea \"green\" ☕","qty":null,"tags":["a","b"]}"#.as_bytes().to_vec()
        );
        assert_eq!(round_trip(&JsonEncoder, vec![1u8, 2, 3]), vec![1, 2, 3]);
        assert_eq!(round_trip(&JsonEncoder, "plain".to_string()), "plain");
        assert_eq!(JsonEncoder.encode(&"plain".to_string()).unwrap(), b"\"plain\"");
        assert_eq!(round_trip(&JsonEncoder, (1i64, false)), (1, false));
        assert_eq!(round_trip(&JsonEncoder, Option::<u8>::None), None);
    }

    #[test]
    fn json_bad_input() {
        for bad in [&b""[..], b"{", b"not json", b"{\"id\":\"seven\",\"item\":\"x\",\"tags\":[]}", b"\xff\xfe"] {
            let t = encoding_error(Encoder::<Order>::decode(&JsonEncoder, bad));
            assert!(t.starts_with("json: "), "{t}");
        }
        // A missing field, and trailing garbage after a valid value.
        encoding_error(Encoder::<Order>::decode(&JsonEncoder, br#"{"id":1,"item":"x"}"#));
        encoding_error(Encoder::<u32>::decode(&JsonEncoder, b"1 2"));
        // A map with non-string keys does not serialize to JSON.
        let mut m = std::collections::HashMap::new();
        m.insert((1, 2), 3);
        encoding_error(JsonEncoder.encode(&m));
    }

    #[test]
    fn default_strings_and_bytes_are_raw() {
        let e = DefaultEncoder;
        assert_eq!(e.encode(&"héllo wörld".to_string()).unwrap(), "héllo wörld".as_bytes());
        assert_eq!(round_trip(&e, "héllo wörld".to_string()), "héllo wörld");
        assert_eq!(round_trip(&e, String::new()), "");
        let raw = vec![0u8, 13, 10, 255, 128];
        assert_eq!(e.encode(&raw).unwrap(), raw);
        assert_eq!(round_trip(&e, raw.clone()), raw);
        let b = Bytes::from(raw.clone());
        assert_eq!(e.encode(&b).unwrap(), raw);
        assert_eq!(round_trip(&e, b.clone()), b);
        let t = encoding_error(Encoder::<String>::decode(&e, b"ok \xff"));
        assert!(t.contains("not a UTF-8 string"), "{t}");
    }

    #[test]
    fn default_numbers_are_text() {
        let e = DefaultEncoder;
        assert_eq!(e.encode(&0u8).unwrap(), b"0");
        assert_eq!(e.encode(&-42i32).unwrap(), b"-42");
        assert_eq!(e.encode(&i64::MIN).unwrap(), b"-9223372036854775808");
        assert_eq!(e.encode(&u128::MAX).unwrap(), u128::MAX.to_string().as_bytes());
        assert_eq!(e.encode(&2.5f64).unwrap(), b"2.5");
        assert_eq!(e.encode(&0.1f32).unwrap(), b"0.1");
        assert_eq!(e.encode(&1e21f64).unwrap(), b"1000000000000000000000");
        assert_eq!(round_trip(&e, i8::MIN), i8::MIN);
        assert_eq!(round_trip(&e, u16::MAX), u16::MAX);
        assert_eq!(round_trip(&e, -7isize), -7);
        assert_eq!(round_trip(&e, usize::MAX), usize::MAX);
        assert_eq!(round_trip(&e, i128::MIN), i128::MIN);
        for f in [0.0f64, -0.0, 1.0 / 3.0, f64::MAX, f64::MIN_POSITIVE, 5e-324, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(round_trip(&e, f).to_bits(), f.to_bits(), "{f}");
        }
        assert!(round_trip(&e, f64::NAN).is_nan());
        assert_eq!(round_trip(&e, 3.4028235e38f32), 3.4028235e38f32);
        // What other clients write: a leading plus (nats.go's %+v), exponents, Go's "+Inf".
        assert_eq!(Encoder::<i32>::decode(&e, b"+17").unwrap(), 17);
        assert_eq!(Encoder::<u64>::decode(&e, b"+17").unwrap(), 17);
        assert_eq!(Encoder::<f64>::decode(&e, b"+2.5e+03").unwrap(), 2500.0);
        assert_eq!(Encoder::<f64>::decode(&e, b"1E-2").unwrap(), 0.01);
        assert_eq!(Encoder::<f64>::decode(&e, b"+Inf").unwrap(), f64::INFINITY);
        assert_eq!(Encoder::<f32>::decode(&e, b"7").unwrap(), 7.0);
    }

    #[test]
    fn default_numbers_bad_text() {
        let e = DefaultEncoder;
        let cases: &[&[u8]] = &[b"", b" 1", b"1 ", b"0x10", b"1.5", b"--1", b"one", b"1\r\n", b"\xff"];
        for bad in cases {
            encoding_error(Encoder::<i64>::decode(&e, bad));
        }
        let t = encoding_error(Encoder::<u8>::decode(&e, b"256"));
        assert!(t.contains("\"256\" is not a u8"), "{t}");
        encoding_error(Encoder::<u32>::decode(&e, b"-1"));
        encoding_error(Encoder::<i8>::decode(&e, b"-129"));
        for bad in [&b""[..], b"1.2.3", b"1,5", b"e5", b"2.5 ", b"\xff"] {
            encoding_error(Encoder::<f64>::decode(&e, bad));
        }
        // A long payload is cut short in the error text.
        let long = vec![b'9'; 200];
        let t = encoding_error(Encoder::<u8>::decode(&e, &long));
        assert!(t.len() < 120 && t.contains("..."), "{t}");
    }

    #[test]
    fn default_bools() {
        let e = DefaultEncoder;
        assert_eq!(e.encode(&true).unwrap(), b"true");
        assert_eq!(e.encode(&false).unwrap(), b"false");
        assert!(round_trip(&e, true));
        assert!(!round_trip(&e, false));
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(Encoder::<bool>::decode(&e, t.as_bytes()).unwrap(), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(!Encoder::<bool>::decode(&e, f.as_bytes()).unwrap(), "{f}");
        }
        for bad in ["", "yes", "tRUE", " true", "true\n", "2"] {
            let t = encoding_error(Encoder::<bool>::decode(&e, bad.as_bytes()));
            assert!(t.ends_with("is not a bool"), "{t}");
        }
    }

    #[test]
    fn decode_errors_name_the_subject() {
        let e = decode_error("orders.new", Error::Encoding("json: oops".into()));
        assert_eq!(e.to_string(), "nats: encoding: message on \"orders.new\" did not decode: json: oops");
    }
}
