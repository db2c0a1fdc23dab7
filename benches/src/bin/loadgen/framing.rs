//! How messages travel on the socket: plain y-websocket frames, or
//! Hocuspocus frames, which prefix every message with the document name and
//! start with an auth message.

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::updates::encoder::{Encoder, EncoderV1};

/// The wire dialect of the server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// y-websocket: one message per frame, the document named by the URL.
    YWebsocket,
    /// Hocuspocus: `varString(document)` before every message.
    Hocuspocus,
}

/// Hocuspocus message types beyond y-protocols (`@hocuspocus/server` 3.x,
/// `MessageType` and `AuthMessageType`).
const HOCUSPOCUS_AUTH: u8 = 2;
const HOCUSPOCUS_CLOSE: u8 = 7;
/// Auth sub-types: the client's token, the server's refusal (its
/// "authenticated" answer, sub-type 2, needs no handling).
const AUTH_TOKEN: u8 = 0;
const AUTH_PERMISSION_DENIED: u8 = 1;

impl Dialect {
    /// Wraps a y-protocols message for the wire.
    pub fn wrap(self, doc: &str, message: &[u8]) -> Vec<u8> {
        match self {
            Dialect::YWebsocket => message.to_vec(),
            Dialect::Hocuspocus => {
                let mut e = EncoderV1::new();
                e.write_string(doc);
                e.write_all(message);
                e.to_vec()
            }
        }
    }

    /// The y-protocols message inside a frame (`None` for a frame addressed
    /// to another document).
    pub fn unwrap<'a>(self, doc: &str, frame: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Dialect::YWebsocket => Some(frame),
            Dialect::Hocuspocus => {
                let mut cursor = Cursor::new(frame);
                let name = cursor.read_string().ok()?;
                (name == doc).then(|| &frame[cursor.next..])
            }
        }
    }

    /// The first frame a client sends, if the dialect wants one.
    pub fn hello(self, doc: &str) -> Option<Vec<u8>> {
        match self {
            Dialect::YWebsocket => None,
            Dialect::Hocuspocus => {
                let mut e = EncoderV1::new();
                e.write_var(HOCUSPOCUS_AUTH);
                e.write_var(AUTH_TOKEN);
                e.write_string("loadgen");
                Some(self.wrap(doc, &e.to_vec()))
            }
        }
    }

    /// Why the server gave up on this client's document, if `message` (an
    /// unwrapped message) says so. A Hocuspocus server refuses or closes a
    /// document with a message on a socket it keeps open, so without this
    /// the client would wait silently. y-websocket servers close the socket
    /// instead, which the client sees anyway.
    pub fn refusal(self, message: &[u8]) -> Option<String> {
        if self == Dialect::YWebsocket {
            return None;
        }
        let reason = |at: usize| {
            let mut cursor = Cursor::new(message.get(at..)?);
            cursor.read_string().ok().map(str::to_owned)
        };
        match message {
            [HOCUSPOCUS_AUTH, AUTH_PERMISSION_DENIED, ..] => Some(format!(
                "permission denied: {}",
                reason(2).unwrap_or_default()
            )),
            [HOCUSPOCUS_CLOSE, ..] => Some(format!(
                "document closed by the server: {}",
                reason(1).unwrap_or_default()
            )),
            _ => None,
        }
    }

    /// The URL of a document under `base`.
    pub fn url(self, base: &str, doc: &str) -> String {
        match self {
            Dialect::YWebsocket => format!("{}/{doc}", base.trim_end_matches('/')),
            // One socket may carry many documents; the URL names none.
            Dialect::Hocuspocus => base.to_owned(),
        }
    }
}
