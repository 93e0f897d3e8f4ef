//! Join tokens: their rows and queries.

use super::sql::{self, params};
use super::{StoreError, Tx, i, join, split, u};

/// A join token row.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Public id.
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Allowed in total.
    pub uses_total: u32,
    /// Still allowed.
    pub uses_left: u32,
    /// Labels.
    pub labels: Vec<String>,
    /// Skips approval.
    pub auto_approve: bool,
    /// Revoked.
    pub revoked: bool,
    /// Most GPUs a node enrolled with it may offer.
    pub max_gpus: Option<u32>,
}

impl TokenRow {
    /// The public view.
    pub fn info(&self) -> proto::TokenInfo {
        proto::TokenInfo {
            id: self.id.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            uses_left: self.uses_left,
            uses_total: self.uses_total,
            labels: self.labels.clone(),
            auto_approve: self.auto_approve,
            revoked: self.revoked,
            max_gpus: self.max_gpus,
        }
    }
}

const TOKEN_COLUMNS: &str = "id, secret_hash, created_at, expires_at, uses_total, uses_left, labels, auto_approve, revoked, max_gpus";

fn token_from_row(r: &sql::Row) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.get(0)?,
        secret_hash: r.get(1)?,
        created_at: u(r.get(2)?),
        expires_at: u(r.get(3)?),
        uses_total: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        uses_left: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        labels: split(&r.get::<_, String>(6)?),
        auto_approve: r.get::<_, i64>(7)? != 0,
        revoked: r.get::<_, i64>(8)? != 0,
        max_gpus: r
            .get::<_, Option<i64>>(9)?
            .map(|g| u32::try_from(g).unwrap_or(0)),
    })
}

impl Tx<'_> {
    /// Inserts a token.
    pub fn insert_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        self.0.exec(
            &format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                t.id,
                t.secret_hash,
                i(t.created_at),
                i(t.expires_at),
                t.uses_total,
                t.uses_left,
                join(&t.labels),
                t.auto_approve,
                t.revoked,
                t.max_gpus
            ],
        )?;
        Ok(())
    }

    /// A token by id.
    pub fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
            params![id],
        )?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    /// All tokens, newest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.0
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, id"),
                params![],
            )?
            .iter()
            .map(token_from_row)
            .collect()
    }

    /// Uses one enrollment of a token.
    pub fn use_token(&self, id: &str) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1 AND uses_left > 0",
            params![id],
        )?;
        Ok(())
    }

    /// Revokes a token; returns whether it existed.
    pub fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .exec("UPDATE tokens SET revoked = 1 WHERE id = ?1", params![id])?
            > 0)
    }
}
