//! `AnnouncementStore` on PostgreSQL: the status page's announcements
//! written through the API, each whole as JSON.

use async_trait::async_trait;

use super::{PostgresStorage, big, json_bodies};
use crate::config::page::Announcement;
use crate::storage::{AnnouncementStore, StorageError};

#[async_trait]
impl AnnouncementStore for PostgresStorage {
    async fn put_announcement(&self, announcement: Announcement) -> Result<(), StorageError> {
        let body = serde_json::to_string(&announcement)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO announcements (id, created_at_ms, body) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[
                    &announcement.id,
                    &announcement.created_at.timestamp_millis(),
                    &body,
                ],
            )
            .await?;
        Ok(())
    }

    async fn announcement(&self, id: String) -> Result<Option<Announcement>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT body FROM announcements WHERE id = $1", &[&id])
            .await?;
        Ok(json_bodies(&rows)?.into_iter().next())
    }

    async fn list_announcements(&self, limit: usize) -> Result<Vec<Announcement>, StorageError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM announcements ORDER BY created_at_ms DESC, id DESC LIMIT $1",
                &[&big(limit)],
            )
            .await?;
        json_bodies(&rows)
    }

    async fn delete_announcement(&self, id: String) -> Result<bool, StorageError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM announcements WHERE id = $1", &[&id])
            .await?;
        Ok(deleted > 0)
    }

    async fn announcement_count(&self) -> Result<usize, StorageError> {
        let client = self.client().await?;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM announcements", &[])
            .await?
            .try_get(0)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }
}
