//! The records Percolator keeps beside the data: locks and commit records.
//!
//! A transaction writes in two phases. *Prewrite* puts each value under the
//! transaction's start timestamp and a [`Lock`] on each key, naming the transaction's
//! primary key; *commit* replaces each lock with a [`Write`] record at the commit
//! timestamp that points back at the start timestamp, primary first. A reader at `ts`
//! finds the newest write record at or before `ts` and follows it to the value. A
//! transaction given up leaves a [`WriteKind::Rollback`] record at its start timestamp,
//! so that a late prewrite of it can never succeed.
//!
//! Both are stored in a small binary form (a kind byte, then big-endian numbers); a
//! record that does not decode is reported as corrupt, never trusted.

/// What a write record (or a lock) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A value was written.
    Put,
    /// The key was deleted.
    Delete,
    /// The transaction rolled back: nothing was written at its start timestamp, and
    /// nothing may be.
    Rollback,
    /// The key was only locked (read for the transaction's consistency, not written).
    Lock,
}

impl WriteKind {
    fn to_byte(self) -> u8 {
        match self {
            WriteKind::Put => 1,
            WriteKind::Delete => 2,
            WriteKind::Rollback => 3,
            WriteKind::Lock => 4,
        }
    }

    fn from_byte(byte: u8) -> Option<WriteKind> {
        Some(match byte {
            1 => WriteKind::Put,
            2 => WriteKind::Delete,
            3 => WriteKind::Rollback,
            4 => WriteKind::Lock,
            _ => return None,
        })
    }
}

/// A commit (or rollback) record, stored in `write` at the commit timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The start timestamp of the transaction that wrote it.
    pub start_ts: u64,
    /// What the transaction did to the key.
    pub kind: WriteKind,
}

impl Write {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.start_ts.to_be_bytes());
        out
    }

    /// The record of a stored form; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Write> {
        let (&kind, rest) = bytes.split_first()?;
        Some(Write {
            kind: WriteKind::from_byte(kind)?,
            start_ts: u64::from_be_bytes(rest.try_into().ok()?),
        })
    }
}

/// A prewrite's lock on a key, stored in `lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The transaction's primary key: its lock (or write record) decides the
    /// transaction's fate.
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub ts: u64,
    /// How long, in milliseconds after the physical time of `ts`, the lock holds before
    /// others may roll the transaction back.
    pub ttl: u64,
    /// What the transaction writes to the key.
    pub kind: WriteKind,
}

impl Lock {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.primary.len());
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&self.primary);
        out
    }

    /// The lock of a stored form; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Lock> {
        let (&kind, rest) = bytes.split_first()?;
        let (ts, rest) = rest.split_first_chunk::<8>()?;
        let (ttl, primary) = rest.split_first_chunk::<8>()?;
        let kind = WriteKind::from_byte(kind).filter(|k| *k != WriteKind::Rollback)?;
        Some(Lock {
            primary: primary.to_vec(),
            ts: u64::from_be_bytes(*ts),
            ttl: u64::from_be_bytes(*ttl),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_to_what_was_encoded_and_garbage_to_none() {
        for kind in [
            WriteKind::Put,
            WriteKind::Delete,
            WriteKind::Rollback,
            WriteKind::Lock,
        ] {
            let write = Write { start_ts: 77, kind };
            assert_eq!(Write::decode(&write.encode()), Some(write));
        }
        let lock = Lock {
            primary: b"pk".to_vec(),
            ts: 100,
            ttl: 3000,
            kind: WriteKind::Put,
        };
        assert_eq!(Lock::decode(&lock.encode()), Some(lock));
        for garbage in [&b""[..], b"\x01", b"\x09\0\0\0\0\0\0\0\x01", b"\x01\0\0"] {
            assert_eq!(Write::decode(garbage), None, "{garbage:?}");
            assert_eq!(Lock::decode(garbage), None, "{garbage:?}");
        }
        let rollback_lock = [&[3u8][..], &[0; 16]].concat();
        assert_eq!(Lock::decode(&rollback_lock), None, "no lock is a rollback");
    }
}
