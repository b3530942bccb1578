//! Versioned migrations. The version lives in `PRAGMA user_version`; step `i` of
//! [`MIGRATIONS`] takes the schema from version `i` to `i + 1` and runs in one transaction
//! together with the version bump, so a crash leaves either the old or the new version.
//! Steps are never edited once released: a change is a new step at the end.

/// `PRAGMA application_id` of a Sluice database ("SLCE"), so a database some other program
/// made is refused rather than having our tables added to it.
pub(crate) const APPLICATION_ID: i64 = 0x534C_4345;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: torrents, viewed marks, resume data, settings.
    "
    PRAGMA application_id = 1397506885;
    CREATE TABLE torrents (
        info_hash  BLOB NOT NULL PRIMARY KEY CHECK (length(info_hash) = 20),
        metainfo   BLOB,
        magnet     TEXT,
        title      TEXT NOT NULL,
        poster     TEXT NOT NULL,
        category   TEXT NOT NULL,
        data       TEXT NOT NULL,
        added_at   INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((metainfo IS NULL) <> (magnet IS NULL))
    ) STRICT;
    CREATE TABLE viewed (
        info_hash   BLOB NOT NULL REFERENCES torrents (info_hash) ON DELETE CASCADE,
        file_id     INTEGER NOT NULL CHECK (file_id BETWEEN 0 AND 4294967295),
        timecode_ms INTEGER NOT NULL CHECK (timecode_ms >= 0),
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (info_hash, file_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE resume (
        info_hash BLOB NOT NULL PRIMARY KEY REFERENCES torrents (info_hash) ON DELETE CASCADE,
        data      BLOB NOT NULL
    ) STRICT;
    CREATE TABLE settings (
        key   TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL CHECK (json_valid(value))
    ) STRICT, WITHOUT ROWID;
    ",
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[cfg(test)]
mod tests {
    #[test]
    fn application_id_literal_matches_constant() {
        assert!(super::MIGRATIONS[0].contains(&format!("application_id = {};", super::APPLICATION_ID)));
    }
}
