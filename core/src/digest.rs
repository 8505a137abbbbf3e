//! Digests of replicated state: the same state gives the same digest on every
//! replica, so a snapshot is named by its digest and checked against it when it
//! is installed.
//!
//! A digest is XXH3 (64 bits) over the value's postcard encoding, the encoding peer
//! frames use, fed to the hasher as it is produced (nothing is collected). It
//! detects accidents (a chunk of another snapshot, a lost or repeated chunk, a
//! replica that diverged), not forgeries: peers are authenticated by the host.

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

/// Hashes a sequence of values into one digest, in the order they are added.
#[derive(Clone, Default)]
pub struct Digester(Xxh3);

impl core::fmt::Debug for Digester {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("Digester")
    }
}

impl Digester {
    pub fn new() -> Digester {
        Digester(Xxh3::new())
    }

    pub fn add<T: Serialize + ?Sized>(&mut self, value: &T) {
        let flavor = HashFlavor(&mut self.0);
        postcard::serialize_with_flavor(value, flavor).expect("plain data always encodes");
    }

    pub fn finish(&self) -> u64 {
        self.0.digest()
    }
}

/// The digest of one value.
pub fn digest_of<T: Serialize + ?Sized>(value: &T) -> u64 {
    let mut digester = Digester::new();
    digester.add(value);
    digester.finish()
}

/// A postcard output that hashes what it is given instead of keeping it.
struct HashFlavor<'a>(&'a mut Xxh3);

impl Flavor for HashFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_the_hash_of_the_encoding() {
        let value = (7u64, "note", vec![1u8, 2, 3]);
        let bytes = postcard::to_allocvec(&value).unwrap();
        assert_eq!(digest_of(&value), xxhash_rust::xxh3::xxh3_64(&bytes));
        let mut digester = Digester::new();
        digester.add(&7u64);
        digester.add(&("note", vec![1u8, 2, 3]));
        assert_eq!(digester.finish(), digest_of(&value), "adding values one by one hashes their concatenation");
        assert_ne!(digest_of(&(8u64, "note", vec![1u8, 2, 3])), digest_of(&value));
    }
}
