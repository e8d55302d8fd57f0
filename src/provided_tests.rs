use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const SCHEMA: &str = r#"{"type":"object","properties":{"room":{"type":"string"}}}"#;

fn configured(name: &str) -> Tool {
    Tool {
        name: name.into(),
        description: "from the file".into(),
        parameters: serde_json::json!({"type": "object"}),
        command: None,
        timeout_ms: 1000,
    }
}

#[test]
fn names_are_unique_and_the_same_program_replaces_its_own() {
    let p = ProvidedTools::default();
    p.set_configured(&[configured("echo")]);
    assert_eq!(p.register(":1.5", "light", "a lamp", SCHEMA), Ok(()));
    let taken = p.register(":1.6", "light", "mine", SCHEMA).unwrap_err();
    assert_eq!(
        taken,
        "`light` is already offered by another program (:1.5)"
    );
    let config = p.register(":1.6", "echo", "", SCHEMA).unwrap_err();
    assert_eq!(config, "`echo` is a tool of the configuration");
    // Registering again replaces: a new description, still one tool.
    assert_eq!(p.register(":1.5", "light", "the hall lamp", SCHEMA), Ok(()));
    let offered = p.offered();
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].description, "the hall lamp");
    assert_eq!(
        p.listing(),
        vec![
            ("echo".into(), "from the file".into(), "config".into()),
            ("light".into(), "the hall lamp".into(), ":1.5".into()),
        ]
    );
}

#[test]
fn bad_registrations_are_refused_in_one_line() {
    let p = ProvidedTools::default();
    let refused = |name: &str, description: &str, parameters: &str| {
        let e = p
            .register(":1.1", name, description, parameters)
            .unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    assert!(refused("", "", SCHEMA).contains("is not 1 to 64 letters"));
    assert!(refused("two words", "", SCHEMA).contains("is not 1 to 64 letters"));
    assert!(refused(&"x".repeat(65), "", SCHEMA).contains("is not 1 to 64 letters"));
    assert!(refused("t", &"d".repeat(MAX_DESCRIPTION + 1), SCHEMA).contains("description"));
    assert!(refused("t", "", "{not json").starts_with("the parameters are not JSON"));
    assert!(refused("t", "", "[1,2]").contains("must be a JSON object"));
    assert!(refused("t", "", r#"{"type":"string"}"#).contains("\"type\": \"object\""));
    let big = format!(
        r#"{{"type":"object","description":"{}"}}"#,
        "x".repeat(MAX_PARAMETERS)
    );
    assert!(refused("t", "", &big).contains("at most 16384"));
    assert!(p.offered().is_empty());
    // The limits themselves are accepted.
    let exact = format!(
        r#"{{"type":"object","description":"{}"}}"#,
        "x".repeat(MAX_PARAMETERS - 34)
    );
    assert_eq!(exact.len(), MAX_PARAMETERS);
    assert_eq!(
        p.register(":1.1", "t", &"d".repeat(MAX_DESCRIPTION), &exact),
        Ok(())
    );
}

#[test]
fn counts_are_bounded_per_program_and_in_all() {
    let p = ProvidedTools::default();
    for i in 0..MAX_PER_PROVIDER {
        assert_eq!(p.register(":1.1", &format!("a{i}"), "", SCHEMA), Ok(()));
    }
    let e = p.register(":1.1", "one_more", "", SCHEMA).unwrap_err();
    assert!(e.contains("offers 8 tools already"), "{e}");
    // Replacing one of its own is still fine at the limit.
    assert_eq!(p.register(":1.1", "a0", "again", SCHEMA), Ok(()));
    for owner in 2..=4 {
        for i in 0..MAX_PER_PROVIDER {
            let name = format!("p{owner}_{i}");
            assert_eq!(
                p.register(&format!(":1.{owner}"), &name, "", SCHEMA),
                Ok(())
            );
        }
    }
    assert_eq!(p.offered().len(), MAX_TOOLS);
    let e = p.register(":1.9", "late", "", SCHEMA).unwrap_err();
    assert!(e.contains("32 tools are offered already"), "{e}");
}

#[test]
fn a_program_that_leaves_takes_its_tools_and_changes_are_announced() {
    let p = ProvidedTools::default();
    let mut changes = p.subscribe();
    p.register(":1.1", "a", "", SCHEMA).unwrap();
    p.register(":1.1", "b", "", SCHEMA).unwrap();
    p.register(":1.2", "c", "", SCHEMA).unwrap();
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert_eq!(p.drop_owner(":1.1"), vec!["a".to_owned(), "b".to_owned()]);
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert!(p.drop_owner(":1.1").is_empty());
    assert!(
        !changes.has_changed().unwrap(),
        "nothing dropped, nothing said"
    );
    assert_eq!(
        p.unregister(":1.1", "c"),
        Err("`c` was registered by another program".into())
    );
    assert_eq!(
        p.unregister(":1.2", "x"),
        Err("no tool `x` is registered".into())
    );
    assert_eq!(p.unregister(":1.2", "c"), Ok(()));
    assert!(p.offered().is_empty());
}

#[test]
fn a_name_the_configuration_takes_later_is_not_offered_twice() {
    let p = ProvidedTools::default();
    p.register(":1.1", "lamp", "", SCHEMA).unwrap();
    p.set_configured(&[configured("lamp")]);
    assert!(p.offered().is_empty());
    assert!(!p.has("lamp"));
}

struct Fake {
    answer: Result<String, CallError>,
    delay: Duration,
    calls: AtomicUsize,
}

impl Caller for Fake {
    fn call(&self, owner: String, name: String, arguments: String) -> CallFuture {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .answer
            .clone()
            .map(|a| format!("{a} {owner} {name} {arguments}"));
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
        })
    }
}

fn with_caller(answer: Result<String, CallError>, delay: Duration) -> (ProvidedTools, Arc<Fake>) {
    let p = ProvidedTools::default();
    let fake = Arc::new(Fake {
        answer,
        delay,
        calls: AtomicUsize::new(0),
    });
    p.set_caller(Some(fake.clone()));
    p.register(":1.7", "lamp", "", SCHEMA).unwrap();
    (p, fake)
}

#[tokio::test]
async fn calls_reach_the_owner_and_failures_become_text() {
    let (p, fake) = with_caller(Ok("on".into()), Duration::ZERO);
    assert_eq!(p.call("lamp", "{}".into()).await, "on :1.7 lamp {}");
    assert_eq!(
        p.call("nope", "{}".into()).await,
        "error: no tool named `nope` on this device"
    );
    assert_eq!(fake.calls.load(Ordering::Relaxed), 1);

    let (p, _) = with_caller(
        Err(CallError::Failed("no such lamp".into())),
        Duration::ZERO,
    );
    assert_eq!(
        p.call("lamp", "{}".into()).await,
        "error: tool `lamp` failed: no such lamp"
    );
    assert!(p.has("lamp"), "a failing tool stays");

    let (p, _) = with_caller(Err(CallError::Gone("no owner".into())), Duration::ZERO);
    assert!(p.call("lamp", "{}".into()).await.contains("is gone"));
    assert!(!p.has("lamp"), "a program found gone loses its tools");

    let p = ProvidedTools::default();
    p.register(":1.7", "lamp", "", SCHEMA).unwrap();
    assert!(p.call("lamp", "{}".into()).await.contains("off the bus"));
}

#[tokio::test]
async fn a_program_that_never_answers_times_out() {
    let (mut p, _) = with_caller(Ok("late".into()), Duration::from_secs(3600));
    p.timeout = Duration::from_millis(50);
    assert_eq!(
        p.call("lamp", "{}".into()).await,
        "error: tool `lamp` failed: timed out after 50 ms"
    );
}

#[test]
fn long_answers_are_cut_on_a_character_boundary() {
    let text = "é".repeat(MAX_RESULT);
    let cut = bounded(text);
    assert!(cut.ends_with(" [output truncated]"));
    assert!(cut.len() <= MAX_RESULT + 20);
    assert_eq!(bounded("short".into()), "short");
}
