use alo_group::{Error, Group, Groups};

use crate::fakes::{Router, Source};

#[test]
fn groups_are_created_once_and_found_by_name() {
    let groups = Groups::new();
    groups
        .create("users", 1024, Source::default())
        .expect("new name");
    groups
        .create("photos", 1024, Source::default())
        .expect("new name");
    assert_eq!(
        groups
            .create("users", 1024, Source::default())
            .expect_err("taken"),
        Error::DuplicateGroup("users".into())
    );
    assert_eq!(groups.get("users").expect("registered").name(), "users");
    assert!(groups.get("nope").is_none());
    let names: Vec<String> = groups.all().iter().map(|g| g.name().to_string()).collect();
    assert_eq!(names, ["photos", "users"]);
}

#[test]
fn built_groups_can_be_registered_and_duplicates_are_refused() {
    let groups = Groups::new();
    let g = Group::builder("g", Source::default())
        .build()
        .expect("valid");
    groups.insert(g.clone()).expect("new name");
    assert_eq!(
        groups.insert(g).expect_err("taken"),
        Error::DuplicateGroup("g".into())
    );
}

#[tokio::test]
async fn groups_of_a_registry_share_its_picker() {
    let router = Router::new();
    let groups = Groups::with_picker(router.clone());
    let g = groups
        .create("g", 1 << 20, Source::default())
        .expect("valid");
    assert_eq!(g.get("x1").await.expect("from peer 1"), "peer1:x1");
}

#[test]
fn registries_are_independent_values() {
    let (a, b) = (Groups::new(), Groups::new());
    a.create("same", 1, Source::default()).expect("new in a");
    b.create("same", 1, Source::default()).expect("new in b");
}
