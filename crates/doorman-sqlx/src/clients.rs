//! [`ClientStore`]: registered clients, and deleting one with everything
//! under it.

use async_trait::async_trait;
use doorman::{Client, ClientStore, StoreError};

use crate::SqlStore;
use crate::backend::{conflict, db, on_pool, write_conn, write_tx};
use crate::rows::{ClientRow, client_cols, client_from_row};

/// A client by id: a [`ClientRow`].
pub(crate) const SELECT_CLIENT: &str = "SELECT client_id, secret_hash, name, description, redirect_uris, scope, \
     grant_types, trusted, released_claims, created_at FROM doorman_clients WHERE client_id = $1";
/// Registers a client unless its id is taken (the columns as
/// [`client_cols`] gives them, after the id).
pub(crate) const INSERT_CLIENT: &str = "INSERT INTO doorman_clients (client_id, secret_hash, name, description, \
     redirect_uris, scope, grant_types, trusted, released_claims, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (client_id) DO NOTHING";
/// Replaces a client's columns.
pub(crate) const UPDATE_CLIENT: &str = "UPDATE doorman_clients SET secret_hash = $2, name = $3, description = $4, \
     redirect_uris = $5, scope = $6, grant_types = $7, trusted = $8, released_claims = $9, created_at = $10 \
     WHERE client_id = $1";
/// Deletes a client's row.
pub(crate) const DELETE_CLIENT: &str = "DELETE FROM doorman_clients WHERE client_id = $1";
/// What [`ClientStore::delete_client`] deletes after the client's row, in
/// order: its consents; its unused codes (after this, every code left is
/// used, and its grant is revoked whether or not it exists yet); its live
/// grants and those its used codes may still create, left as revoked
/// markers; their tokens; its remaining codes.
pub(crate) const DELETE_CLIENT_REST: [&str; 6] = [
    "DELETE FROM doorman_consents WHERE client_id = $1",
    "DELETE FROM doorman_codes WHERE client_id = $1 AND consumed_at IS NULL",
    "UPDATE doorman_grants SET revoked = TRUE WHERE client_id = $1 AND revoked = FALSE",
    "INSERT INTO doorman_grants (id, revoked) \
     SELECT DISTINCT grant_id, TRUE FROM doorman_codes WHERE client_id = $1 \
     ON CONFLICT (id) DO UPDATE SET revoked = TRUE",
    "DELETE FROM doorman_tokens WHERE grant_id IN (SELECT id FROM doorman_grants WHERE client_id = $1) \
     OR grant_id IN (SELECT grant_id FROM doorman_codes WHERE client_id = $1)",
    "DELETE FROM doorman_codes WHERE client_id = $1",
];

#[async_trait]
impl ClientStore for SqlStore {
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::client(native, client_id);
        }
        let row: Option<ClientRow> = on_pool!(self.backend, |pool| {
            sqlx::query_as(SELECT_CLIENT)
                .bind(client_id)
                .fetch_optional(pool)
                .await
                .map_err(db)?
        });
        row.map(client_from_row).transpose()
    }

    async fn create_client(&self, client: &Client) -> Result<bool, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::create_client(native, client).await;
        }
        Ok(write_client(self, INSERT_CLIENT, client).await? == 1)
    }

    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::update_client(native, client).await;
        }
        Ok(write_client(self, UPDATE_CLIENT, client).await? > 0)
    }

    /// One transaction: the client row, its consents, its codes, and every
    /// grant of it — those created and those a used code of it may still
    /// create — revoked (left as markers) with all their tokens.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        if let Some(native) = self.backend.native() {
            return crate::native_ops::delete_client(native, client_id).await;
        }
        write_tx!(self.backend, |conn, _d| {
            let gone = sqlx::query(DELETE_CLIENT)
                .bind(client_id)
                .execute(&mut *conn)
                .await
                .map_err(db)?
                .rows_affected();
            if gone == 0 {
                return Ok(false);
            }
            for sql in DELETE_CLIENT_REST {
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

/// Runs [`INSERT_CLIENT`] or [`UPDATE_CLIENT`] with `client`'s columns on
/// the pool: how many rows it changed.
async fn write_client(
    store: &SqlStore,
    sql: &'static str,
    client: &Client,
) -> Result<u64, StoreError> {
    let c = client_cols(client)?;
    write_conn!(store.backend, |conn| {
        sqlx::query(sql)
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
    })
}
