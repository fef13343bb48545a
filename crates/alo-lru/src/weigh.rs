//! What an entry costs: [`Weigh`] for the types themselves, [`Weigher`] for a whole entry.

use std::rc::Rc;
use std::sync::Arc;

/// The bytes a key or a value is charged against a cache's budget.
///
/// Implementations charge the payload a program thinks of as the data: the length of a string or
/// of a byte buffer, the size of an integer. They do not count heap headers, spare capacity or the
/// cache's own bookkeeping (see the crate docs for that overhead); to charge those too, build the
/// cache with a closure weigher.
pub trait Weigh {
    /// This value's weight in bytes.
    fn weigh(&self) -> usize;
}

impl Weigh for str {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl Weigh for [u8] {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl Weigh for String {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl Weigh for Vec<u8> {
    fn weigh(&self) -> usize {
        self.len()
    }
}

#[cfg(feature = "bytes")]
impl Weigh for bytes::Bytes {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl<T: Weigh + ?Sized> Weigh for &T {
    fn weigh(&self) -> usize {
        (**self).weigh()
    }
}

impl<T: Weigh + ?Sized> Weigh for Box<T> {
    fn weigh(&self) -> usize {
        (**self).weigh()
    }
}

impl<T: Weigh + ?Sized> Weigh for Arc<T> {
    fn weigh(&self) -> usize {
        (**self).weigh()
    }
}

impl<T: Weigh + ?Sized> Weigh for Rc<T> {
    fn weigh(&self) -> usize {
        (**self).weigh()
    }
}

macro_rules! weigh_by_size {
    ($($t:ty)*) => {$(
        impl Weigh for $t {
            fn weigh(&self) -> usize {
                size_of::<$t>()
            }
        }
    )*};
}

weigh_by_size!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

/// Computes the charge of a whole entry.
///
/// Every closure `Fn(&K, &V) -> usize` is a weigher, so a cache can charge whatever a program
/// needs, e.g. `|k: &String, v: &Vec<u8>| k.len() + v.capacity() + 64`.
pub trait Weigher<K, V> {
    /// The bytes the entry `key -> value` is charged.
    fn weigh(&self, key: &K, value: &V) -> usize;
}

impl<K, V, F> Weigher<K, V> for F
where
    F: Fn(&K, &V) -> usize,
{
    fn weigh(&self, key: &K, value: &V) -> usize {
        self(key, value)
    }
}

/// The default weigher: an entry costs `key.weigh() + value.weigh()`, saturating at `usize::MAX`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByteWeigher;

impl<K: Weigh, V: Weigh> Weigher<K, V> for ByteWeigher {
    fn weigh(&self, key: &K, value: &V) -> usize {
        key.weigh().saturating_add(value.weigh())
    }
}
