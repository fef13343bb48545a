use std::rc::Rc;
use std::sync::Arc;

use alo_lru::{ByteWeigher, Weigh, Weigher};

#[test]
fn strings_and_buffers_weigh_their_length() {
    assert_eq!("héllo".weigh(), 6);
    assert_eq!(String::from("abc").weigh(), 3);
    assert_eq!(b"abcd"[..].weigh(), 4);
    assert_eq!(
        Vec::<u8>::with_capacity(100).weigh(),
        0,
        "capacity is not charged"
    );
    assert_eq!(bytes::Bytes::from_static(b"xyz").weigh(), 3);
}

#[test]
fn integers_weigh_their_size() {
    assert_eq!(7u8.weigh(), 1);
    assert_eq!(7i32.weigh(), 4);
    assert_eq!(7u64.weigh(), 8);
    assert_eq!(7u128.weigh(), 16);
    assert_eq!(7usize.weigh(), size_of::<usize>());
}

#[test]
fn pointers_weigh_what_they_point_to() {
    let boxed: Box<str> = "four".into();
    let shared: Arc<[u8]> = Arc::from(&b"12345"[..]);
    let counted: Rc<String> = Rc::new("ab".into());
    assert_eq!(boxed.weigh(), 4);
    assert_eq!(shared.weigh(), 5);
    assert_eq!(counted.weigh(), 2);
    assert_eq!((&"six!!!").weigh(), 6);
}

#[test]
fn byte_weigher_adds_key_and_value_and_saturates() {
    assert_eq!(ByteWeigher.weigh(&"key", &vec![0u8; 10]), 13);

    struct Huge;
    impl Weigh for Huge {
        fn weigh(&self) -> usize {
            usize::MAX
        }
    }
    assert_eq!(ByteWeigher.weigh(&Huge, &Huge), usize::MAX);
}

#[test]
fn closures_are_weighers() {
    let w = |k: &u32, v: &String| *k as usize + v.len();
    assert_eq!(Weigher::weigh(&w, &10, &"ab".to_string()), 12);
}
