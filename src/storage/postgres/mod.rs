//! The PostgreSQL backend: the same traits as SQLite's, for several
//! aggregators on one database.
//!
//! Connections come from a deadpool pool over tokio-postgres; TLS to the
//! server is rustls, chosen by `sslmode` as libpq spells it (`tls.rs`).
//! The schema is versioned migrations applied once, under an advisory
//! lock, when replicas start together (`schema.rs`). A decision on a
//! check (`IngestStore::decide`) takes a transaction-scoped advisory lock
//! per check, in one order, before it reads the check's state: decisions
//! on one check from any replica run one after the other, and a check
//! never stored yet is covered too (a row lock would have no row to lock).
//!
//! Tables and columns mirror SQLite's (`sqlite/schema.rs`): times are
//! milliseconds since the epoch, ids and JSON bodies text, so the two
//! backends store the same things and one suite tests both.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::StorageError;
use crate::clock::Clock;
use crate::limits;

mod announcements;
mod coordination;
mod history;
mod ingest;
mod jobs;
mod outbox;
mod schema;
#[cfg(test)]
pub(crate) mod test_server;
mod tls;

/// What is wrong with a `--database` URL, in plain words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("the database URL is not a PostgreSQL URL: {0}")]
    Invalid(String),
    #[error("sslmode={0} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error(
        "sslmode=verify-ca needs sslrootcert=<the server's CA file> (the name is not checked, so the system's roots would trust any public certificate)"
    )]
    VerifyCaWithoutRoot,
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
}

pub struct PostgresStorage {
    pool: Pool,
    clock: Clock,
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user:password@host:port/db?sslmode=...`),
    /// runs the migrations and checks that a connection works.
    pub async fn connect(url: &str, clock: Clock) -> Result<PostgresStorage, StorageError> {
        let (config, tls) = tls::config_for(url).map_err(|e| StorageError::Database(e.into()))?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(limits::POSTGRES_POOL_MAX)
            .wait_timeout(Some(limits::POSTGRES_WAIT_MAX))
            .create_timeout(Some(limits::POSTGRES_CONNECT_TIMEOUT))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StorageError::Database(e.into()))?;
        let storage = PostgresStorage { pool, clock };
        {
            let mut client = storage.client().await?;
            schema::migrate(&mut client).await?;
        }
        Ok(storage)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StorageError> {
        Ok(self.pool.get().await?)
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(error: tokio_postgres::Error) -> StorageError {
        StorageError::Database(Box::new(error))
    }
}

impl From<deadpool_postgres::PoolError> for StorageError {
    fn from(error: deadpool_postgres::PoolError) -> StorageError {
        StorageError::Database(Box::new(error))
    }
}

/// A count or limit as PostgreSQL's BIGINT.
fn big(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The JSON bodies of `rows` (column 0), decoded.
fn json_bodies<T: serde::de::DeserializeOwned>(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<T>, StorageError> {
    rows.iter()
        .map(|row| Ok(serde_json::from_str(row.try_get::<_, &str>(0)?)?))
        .collect()
}
