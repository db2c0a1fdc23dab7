//! Encoding updates in lib0 v2 so that Yjs and yrs can read them back.
//!
//! yrs 0.28's `EncoderV2` writes a length before the bytes of every
//! `write_all`, so a buffer written with `write_buf` (the content of a binary
//! item: a `Uint8Array` in a Yjs array) carries its length twice, and every
//! decoder, yrs's and Yjs's, loses its place after it. [`FixedV2`] writes
//! those bytes as they are and delegates everything else to `EncoderV2`.

use yrs::encoding::write::Write;
use yrs::updates::encoder::{Encode, Encoder, EncoderV2};
use yrs::{Any, ClientID, ID, Update};

/// `update` in the v2 encoding.
pub(crate) fn encode_v2(update: &Update) -> Vec<u8> {
    let mut encoder = FixedV2(EncoderV2::new());
    update.encode(&mut encoder);
    encoder.to_vec()
}

struct FixedV2(EncoderV2);

impl Write for FixedV2 {
    fn write_all(&mut self, buf: &[u8]) {
        // `EncoderV2::write_u8` writes one byte to the main stream as is.
        for &byte in buf {
            self.0.write_u8(byte);
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.0.write_u8(value)
    }

    fn write_string(&mut self, str: &str) {
        // v2 keeps strings in their own column.
        self.0.write_string(str)
    }
}

impl Encoder for FixedV2 {
    fn to_vec(self) -> Vec<u8> {
        self.0.to_vec()
    }
    fn reset_ds_cur_val(&mut self) {
        self.0.reset_ds_cur_val()
    }
    fn write_ds_clock(&mut self, clock: u32) {
        self.0.write_ds_clock(clock)
    }
    fn write_ds_len(&mut self, len: u32) {
        self.0.write_ds_len(len)
    }
    fn write_left_id(&mut self, id: &ID) {
        self.0.write_left_id(id)
    }
    fn write_right_id(&mut self, id: &ID) {
        self.0.write_right_id(id)
    }
    fn write_client(&mut self, client: ClientID) {
        self.0.write_client(client)
    }
    fn write_info(&mut self, info: u8) {
        self.0.write_info(info)
    }
    fn write_parent_info(&mut self, is_y_key: bool) {
        self.0.write_parent_info(is_y_key)
    }
    fn write_type_ref(&mut self, info: u8) {
        self.0.write_type_ref(info)
    }
    fn write_len(&mut self, len: u32) {
        self.0.write_len(len)
    }
    fn write_any(&mut self, any: &Any) {
        self.0.write_any(any)
    }
    fn write_json(&mut self, any: &Any) {
        self.0.write_json(any)
    }
    fn write_key(&mut self, string: &str) {
        self.0.write_key(string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;

    #[test]
    fn binary_content_round_trips() {
        // A Yjs array holding `Uint8Array [1, 2]` at the start of root "a".
        let v1 = [1, 1, 5, 0, 3, 1, 1, b'a', 2, 1, 2, 0];
        let update = Update::decode_v1(&v1).unwrap();
        let decoded = Update::decode_v2(&encode_v2(&update)).unwrap();
        assert_eq!(decoded.encode_v1(), v1);
        // What yrs writes on its own does not decode.
        assert!(Update::decode_v2(&update.encode_v2()).is_err());
    }
}
