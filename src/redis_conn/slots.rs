//! The two checksums of the key layout, both public contracts:
//! - [`shard_of`]: an event's shard, CRC-32 (IEEE 802.3, as zlib and `crc32fast` compute it) of
//!   the UTF-8 bytes of its `to`, mod `stream.shards`. Call servers compute it to pick the calls
//!   stream: CRC-32 of `"alice"` is `0x278ebc47`, so with 4 shards alice's events go to shard 3.
//! - [`key_slot`]: the Redis Cluster slot of a key, CRC-16 (XMODEM) of its hash tag (the text
//!   between the first `{` and the next `}`, when not empty) or of the whole key, mod 16384.
//!   [`shard_tag`] uses it to pick, for shard `i` of `n`, a hash tag whose slot lies in the
//!   `i`-th of `n` equal slot ranges, so shards spread over masters that own equal ranges (what
//!   `redis-cli --cluster create` sets up).

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32: [u32; 256] = crc32_table();

/// CRC-32 (IEEE 802.3, reflected, init and final xor `0xffffffff`).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for b in bytes {
        c = CRC32[((c ^ *b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// CRC-16/XMODEM (polynomial `0x1021`, init 0), the checksum of Redis Cluster slots.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for b in bytes {
        crc ^= (*b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of `key` (its hash tag when it has a non-empty one).
pub fn key_slot(key: &str) -> u16 {
    let hashed = key
        .find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed.as_bytes()) % SLOTS
}

/// The shard (0-based) of an event to `to` over `shards` streams: CRC-32 of `to` mod `shards`.
pub fn shard_of(to: &str, shards: u32) -> usize {
    (crc32(to.as_bytes()) % shards.max(1)) as usize
}

/// The hash tag of shard `i` of `n`: `"<i>"` when its slot falls in the shard's slot range
/// (`i * 16384 / n` up to `(i + 1) * 16384 / n`), else the first of `"<i>.1"`, `"<i>.2"`, …
/// that does.
pub fn shard_tag(i: u32, n: u32) -> String {
    let n = n.max(1) as u64;
    let low = (i as u64 * SLOTS as u64 / n) as u16;
    let high = ((i as u64 + 1) * SLOTS as u64 / n) as u16;
    let fits = |tag: &str| (low..high).contains(&(crc16(tag.as_bytes()) % SLOTS));
    let plain = i.to_string();
    if fits(&plain) {
        return plain;
    }
    (1u64..)
        .map(|j| format!("{i}.{j}"))
        .find(|tag| fits(tag))
        .expect("every slot range of at least one slot is hit by some tag")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"alice"), 0x278E_BC47);
    }

    #[test]
    fn the_shard_of_to_is_crc32_mod_n() {
        assert_eq!(shard_of("alice", 4), 3);
        assert_eq!(shard_of("alice", 1), 0);
        assert_eq!(shard_of("123456789", 7), (0xCBF4_3926u32 % 7) as usize);
    }

    #[test]
    fn slots_follow_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        assert_eq!(key_slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
    }

    #[test]
    fn the_documented_tags_of_four_shards() {
        let tags: Vec<_> = (0..4).map(|i| shard_tag(i, 4)).collect();
        assert_eq!(tags, ["0.1", "1.3", "2.1", "3.3"]);
        let slots: Vec<_> = tags.iter().map(|t| key_slot(t)).collect();
        assert_eq!(slots, [1598, 4428, 10334, 16172]);
        assert_eq!(shard_tag(0, 1), "0");
    }

    #[test]
    fn shard_tags_fall_in_their_own_slot_range() {
        for n in [1, 2, 3, 4, 7, 16, 64] {
            let mut slots = Vec::new();
            for i in 0..n {
                let slot = key_slot(&format!("{{{}}}", shard_tag(i, n)));
                assert!(slot as u32 >= i * 16384 / n && (slot as u32) < (i + 1) * 16384 / n);
                slots.push(slot);
            }
            slots.dedup();
            assert_eq!(slots.len(), n as usize);
        }
    }
}
