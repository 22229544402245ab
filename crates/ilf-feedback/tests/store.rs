//! The annotation store on its own: migrations, imports, tokens, idempotent submissions.

mod common;

use ilf_data::verdict::{ProgramOutcome, Status};
use ilf_feedback::failures::task_info;
use ilf_feedback::store::{
    sha256_hex, NewProgram, Role, Store, Submission, SubmitError, TaskState,
};

fn passing() -> ProgramOutcome {
    ProgramOutcome {
        status: Status::Passed,
        tests: vec![],
        error: None,
        detail: None,
        duration_s: 0.01,
    }
}

fn store_with_one_program(dir: &std::path::Path) -> (Store, i64) {
    let store = Store::open(&dir.join("ilf.db")).unwrap();
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let program = NewProgram {
        task_id: 11,
        program: "def remove_Occ(s,ch):\n    return s\n".into(),
        prompt: String::new(),
        test: "def check(candidate): pass".into(),
        verdict: None,
        sample: Some(3),
        origin: "test".into(),
    };
    let summary = store
        .import_programs(&[task_info(task)], std::slice::from_ref(&program))
        .unwrap();
    assert_eq!((summary.tasks_added, summary.programs_added), (1, 1));
    let again = store
        .import_programs(&[task_info(task)], &[program])
        .unwrap();
    assert_eq!(
        (
            again.tasks_added,
            again.programs_added,
            again.programs_known
        ),
        (0, 0, 1)
    );
    let id = store.programs(11, 10).unwrap()[0].id;
    (store, id)
}

#[test]
fn migrations_are_recorded_and_reopening_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_one_program(dir.path());
    assert_eq!(store.migrations().unwrap(), vec![1]);
    drop(store);
    let store = Store::open(&dir.path().join("ilf.db")).unwrap();
    assert_eq!(store.migrations().unwrap(), vec![1]);
    assert_eq!(store.counts().unwrap().programs, 1);
    store.check_integrity().unwrap();
}

#[test]
fn tokens_are_stored_hashed_and_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_one_program(dir.path());
    let token = store.add_annotator("ada", Role::Annotator).unwrap();
    assert_eq!(token.len(), 64);
    assert!(
        store.add_annotator("ada", Role::Reviewer).is_err(),
        "names are unique"
    );
    drop(store);
    let raw = std::fs::read(dir.path().join("ilf.db")).unwrap();
    let wal = std::fs::read(dir.path().join("ilf.db-wal")).unwrap_or_default();
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(
        !contains(&raw, &token) && !contains(&wal, &token),
        "the plain token must not be stored"
    );
    assert!(contains(&raw, &sha256_hex(&token)) || contains(&wal, &sha256_hex(&token)));

    let store = Store::open(&dir.path().join("ilf.db")).unwrap();
    assert!(store.login("not a token").unwrap().is_none());
    let (cookie, session) = store.login(&token).unwrap().unwrap();
    assert_eq!(session.annotator.name, "ada");
    assert_eq!(store.session(&cookie).unwrap().unwrap().csrf, session.csrf);
    store.logout(&cookie).unwrap();
    assert!(store.session(&cookie).unwrap().is_none());
}

#[test]
fn submissions_are_idempotent_and_once_per_annotator() {
    let dir = tempfile::tempdir().unwrap();
    let (store, program_id) = store_with_one_program(dir.path());
    store.add_annotator("ada", Role::Annotator).unwrap();
    let ada = store.annotators().unwrap()[0].id;
    let submission = Submission {
        idempotency_key: "key-1".into(),
        program_id,
        annotator_id: ada,
        feedback: "It returns the input unchanged; remove the first and last occurrence.".into(),
        refinement: "def remove_Occ(s,ch):\n    return s.replace(ch, '', 1)\n".into(),
        verdict: passing(),
        time_spent_s: Some(42.0),
    };
    let first = store.submit(&submission).unwrap();
    assert!(!first.replayed);
    let replay = store.submit(&submission).unwrap();
    assert_eq!((replay.id, replay.replayed), (first.id, true));
    let other_key = Submission {
        idempotency_key: "key-2".into(),
        ..submission.clone()
    };
    assert!(
        matches!(store.submit(&other_key), Err(SubmitError::AlreadyAnnotated(id)) if id == program_id)
    );
    assert_eq!(store.counts().unwrap().feedback, 1);
    assert_eq!(store.counts().unwrap().refinements, 1);

    let summaries = store.task_summaries(ada).unwrap();
    assert_eq!(summaries[0].state, TaskState::Annotated);
    assert_eq!(store.progress(ada).unwrap().time_spent_s, 42.0);

    let record = &store.export().unwrap()[0];
    assert_eq!(record.task_id, 11);
    assert_eq!(record.worker_id.as_deref(), Some("ada"));
    assert_eq!(
        record.completion.as_deref(),
        Some("\n    return s.replace(ch, '', 1)\n")
    );
    assert_eq!(record.passed, Some(true));
    let ilf = record.ilf.as_ref().unwrap();
    assert_eq!(ilf.time_spent_s, Some(42.0));
    assert!(ilf.edit_distance_max.unwrap() > 0.0);

    store.add_annotator("rita", Role::Reviewer).unwrap();
    let rita = store.annotators().unwrap()[1].id;
    store
        .review("r-1", first.id, rita, false, "feedback is vague")
        .unwrap();
    store
        .review("r-1", first.id, rita, false, "feedback is vague")
        .unwrap();
    store
        .review("r-2", first.id, rita, true, "fine after all")
        .unwrap();
    assert_eq!(store.counts().unwrap().reviews, 2);
    assert_eq!(
        store.export().unwrap()[0]
            .ilf
            .as_ref()
            .unwrap()
            .review
            .as_deref(),
        Some("accepted")
    );
}

#[test]
fn skips_record_a_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_one_program(dir.path());
    store.add_annotator("ada", Role::Annotator).unwrap();
    let ada = store.annotators().unwrap()[0].id;
    let first = store
        .skip("s-1", 11, ada, "every program is far off")
        .unwrap();
    assert_eq!(
        store
            .skip("s-1", 11, ada, "every program is far off")
            .unwrap(),
        ilf_feedback::store::Stored {
            id: first.id,
            replayed: true
        }
    );
    assert_eq!(store.counts().unwrap().skips, 1);
    assert_eq!(
        store.task_summaries(ada).unwrap()[0].state,
        TaskState::Skipped
    );
    assert_eq!(store.progress(ada).unwrap().skipped, 1);
}
