//! `AnnouncementStore` on SQLite: one row per announcement, its whole JSON
//! in `body`, so a timeline update rewrites one row in one statement.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, json_bodies};
use crate::config::page::Announcement;
use crate::storage::{AnnouncementStore, StorageError};

#[async_trait]
impl AnnouncementStore for SqliteStorage {
    async fn put_announcement(&self, announcement: Announcement) -> Result<(), StorageError> {
        let body = serde_json::to_string(&announcement)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO announcements (id, created_at_ms, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                params![
                    announcement.id,
                    announcement.created_at.timestamp_millis(),
                    body
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn announcement(&self, id: String) -> Result<Option<Announcement>, StorageError> {
        self.with(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM announcements WHERE id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(match body {
                Some(body) => Some(serde_json::from_str(&body)?),
                None => None,
            })
        })
        .await
    }

    async fn list_announcements(&self, limit: usize) -> Result<Vec<Announcement>, StorageError> {
        self.with(move |conn| {
            json_bodies(
                conn,
                "SELECT body FROM announcements ORDER BY created_at_ms DESC, id DESC LIMIT ?1",
                params![limit as i64],
            )
        })
        .await
    }

    async fn delete_announcement(&self, id: String) -> Result<bool, StorageError> {
        self.with(move |conn| {
            Ok(conn.execute("DELETE FROM announcements WHERE id = ?1", params![id])? > 0)
        })
        .await
    }

    async fn announcement_count(&self) -> Result<usize, StorageError> {
        self.with(|conn| {
            let count: i64 =
                conn.query_row("SELECT COUNT(*) FROM announcements", [], |row| row.get(0))?;
            Ok(usize::try_from(count).unwrap_or(0))
        })
        .await
    }
}
