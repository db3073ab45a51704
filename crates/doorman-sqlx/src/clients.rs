//! [`ClientStore`]: registered clients, and deleting one with everything
//! under it.

use async_trait::async_trait;
use doorman::{Client, ClientStore, StoreError};

use crate::SqlStore;
use crate::backend::{conflict, db, on_pool, write_conn, write_tx};
use crate::rows::{ClientRow, client_cols, client_from_row};

#[async_trait]
impl ClientStore for SqlStore {
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let row: Option<ClientRow> = on_pool!(self.backend, |pool| {
            sqlx::query_as(
                "SELECT client_id, secret_hash, name, description, redirect_uris, scope, grant_types, trusted, \
                 released_claims, created_at FROM doorman_clients WHERE client_id = $1",
            )
            .bind(client_id)
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(client_from_row).transpose()
    }

    async fn create_client(&self, client: &Client) -> Result<bool, StoreError> {
        let c = client_cols(client)?;
        let done = write_conn!(self.backend, |conn| {
            sqlx::query(
                "INSERT INTO doorman_clients (client_id, secret_hash, name, description, redirect_uris, scope, \
                 grant_types, trusted, released_claims, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (client_id) DO NOTHING",
            )
            .bind(&client.client_id)
            .bind(c.secret_hash)
            .bind(&client.name)
            .bind(&client.description)
            .bind(c.redirect_uris)
            .bind(c.scope)
            .bind(c.grant_types)
            .bind(client.trusted)
            .bind(c.released_claims)
            .bind(c.created_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict("a client with this id exists"))
            .map(|done| done.rows_affected())
        })?;
        Ok(done == 1)
    }

    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        let c = client_cols(client)?;
        let done = write_conn!(self.backend, |conn| {
            sqlx::query(
                "UPDATE doorman_clients SET secret_hash = $2, name = $3, description = $4, redirect_uris = $5, \
                 scope = $6, grant_types = $7, trusted = $8, released_claims = $9, created_at = $10 \
                 WHERE client_id = $1",
            )
            .bind(&client.client_id)
            .bind(c.secret_hash)
            .bind(&client.name)
            .bind(&client.description)
            .bind(c.redirect_uris)
            .bind(c.scope)
            .bind(c.grant_types)
            .bind(client.trusted)
            .bind(c.released_claims)
            .bind(c.created_at)
            .execute(&mut *conn)
            .await
            .map_err(db)
            .map(|done| done.rows_affected())
        })?;
        Ok(done > 0)
    }

    /// One transaction: the client row, its consents, its codes, and every
    /// grant of it — those created and those a used code of it may still
    /// create — revoked (left as markers) with all their tokens.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        write_tx!(self.backend, |conn, _d| {
            let gone = sqlx::query("DELETE FROM doorman_clients WHERE client_id = $1")
                .bind(client_id)
                .execute(&mut *conn)
                .await
                .map_err(db)?
                .rows_affected();
            if gone == 0 {
                return Ok(false);
            }
            for sql in [
                "DELETE FROM doorman_consents WHERE client_id = $1",
                // Unused codes first: after this, every code left is used,
                // and its grant is revoked below whether or not it exists yet.
                "DELETE FROM doorman_codes WHERE client_id = $1 AND consumed_at IS NULL",
                "UPDATE doorman_grants SET revoked = TRUE WHERE client_id = $1 AND revoked = FALSE",
                "INSERT INTO doorman_grants (id, revoked) \
                 SELECT DISTINCT grant_id, TRUE FROM doorman_codes WHERE client_id = $1 \
                 ON CONFLICT (id) DO UPDATE SET revoked = TRUE",
                "DELETE FROM doorman_tokens WHERE grant_id IN (SELECT id FROM doorman_grants WHERE client_id = $1) \
                 OR grant_id IN (SELECT grant_id FROM doorman_codes WHERE client_id = $1)",
                "DELETE FROM doorman_codes WHERE client_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(client_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
            Ok(true)
        })
    }
}
