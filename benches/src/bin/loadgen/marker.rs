//! Edit markers: the text each simulated edit inserts, carrying who sent it,
//! its sequence number and when, so receivers can measure fan-out latency.
//!
//! A marker is `~M{sender}.{seq}.{micros}~`. Yjs updates carry inserted text
//! as plain UTF-8, so a receiver that does not apply updates finds markers
//! by scanning the frame's bytes: merged updates keep each insert whole.

use memchr::memmem;

/// One marker found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Global client index of the sender.
    pub sender: u32,
    /// The sender's edit counter.
    pub seq: u32,
    /// Send time in microseconds since the run started.
    pub sent_us: u64,
}

/// The text for an edit.
pub fn text(sender: u32, seq: u32, sent_us: u64) -> String {
    format!("~M{sender}.{seq}.{sent_us}~")
}

/// Calls `found` for every marker in `bytes`.
pub fn scan(bytes: &[u8], mut found: impl FnMut(Marker)) {
    for start in memmem::find_iter(bytes, b"~M") {
        if let Some(marker) = parse(&bytes[start + 2..]) {
            found(marker);
        }
    }
}

fn parse(rest: &[u8]) -> Option<Marker> {
    let mut fields = [0u64; 3];
    let mut field = 0;
    let mut digits = 0;
    for &b in rest.iter().take(40) {
        match b {
            b'0'..=b'9' => {
                fields[field] = fields[field]
                    .checked_mul(10)?
                    .checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b'.' if field < 2 && digits > 0 => {
                field += 1;
                digits = 0;
            }
            b'~' if field == 2 && digits > 0 => {
                return Some(Marker {
                    sender: u32::try_from(fields[0]).ok()?,
                    seq: u32::try_from(fields[1]).ok()?,
                    sent_us: fields[2],
                });
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_among_bytes() {
        let mut bytes = vec![0, 2, 9];
        bytes.extend(text(7, 3, 123_456).as_bytes());
        bytes.extend([1, 2, b'~', b'M', b'x']);
        bytes.extend(text(8, 0, 1).as_bytes());
        let mut found = Vec::new();
        scan(&bytes, |m| found.push(m));
        assert_eq!(
            found,
            vec![
                Marker {
                    sender: 7,
                    seq: 3,
                    sent_us: 123_456
                },
                Marker {
                    sender: 8,
                    seq: 0,
                    sent_us: 1
                }
            ]
        );
    }
}
