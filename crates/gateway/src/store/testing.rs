//! Test support: every store test runs on each engine.

use super::{PgOptions, Store};

/// Where a test's state lives.
pub enum Place {
    /// A SQLite file in a temporary directory.
    Lite(tempfile::TempDir),
    /// A fresh PostgreSQL database.
    Pg(String),
}

/// One engine under test.
pub struct Case {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// The open store.
    pub store: Store,
    /// Its place, to open it again.
    pub place: Place,
}

impl Case {
    /// A second, independent handle on the same state.
    pub fn reopen(&self) -> Store {
        match &self.place {
            Place::Lite(dir) => Store::open(&dir.path().join("s.db")).unwrap(),
            Place::Pg(url) => Store::open_postgres(&pg(url)).unwrap(),
        }
    }
}

/// Options for a test database.
pub fn pg(url: &str) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        password: None,
        ca_pem: None,
        pool_size: 4,
    }
}

/// SQLite always; PostgreSQL when installed (else it says SKIPPED).
pub fn engines(what: &str) -> Vec<Case> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![Case {
        engine: "sqlite",
        store: Store::open(&dir.path().join("s.db")).unwrap(),
        place: Place::Lite(dir),
    }];
    if let Some(server) = testpg::shared(what) {
        let url = server.database().unwrap();
        out.push(Case {
            engine: "postgres",
            store: Store::open_postgres(&pg(&url)).unwrap(),
            place: Place::Pg(url),
        });
    }
    out
}
