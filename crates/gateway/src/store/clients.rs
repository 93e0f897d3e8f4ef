//! The clients table: admin and bot credentials as first-class identities
//! with unique names, a current serial, and a revocation state.

use super::sql::{Row, params};
use super::{StoreError, Tx, i, u};

/// Whether a client credential may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// In use.
    Active,
    /// Revoked: refused in every handshake.
    Revoked,
}

impl ClientState {
    /// The state's word.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Active => "active",
            ClientState::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Result<ClientState, StoreError> {
        match s {
            "active" => Ok(ClientState::Active),
            "revoked" => Ok(ClientState::Revoked),
            other => Err(StoreError::Corrupt(format!(
                "unknown client state {other:?}"
            ))),
        }
    }
}

/// One client credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    /// Unique name (certificate CN).
    pub name: String,
    /// Admin or bot.
    pub role: proto::Role,
    /// A bot's chat namespace.
    pub namespace: Option<String>,
    /// Active or revoked.
    pub state: ClientState,
    /// Serial of the current certificate.
    pub cert_serial: String,
    /// Its expiry, unix seconds.
    pub not_after: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Who created it.
    pub created_by: String,
}

const COLUMNS: &str =
    "name, role, namespace, state, cert_serial, not_after, created_at, created_by";

fn from_row(r: &Row) -> Result<ClientRow, StoreError> {
    let name: String = r.get(0)?;
    let role: String = r.get(1)?;
    let state: String = r.get(3)?;
    Ok(ClientRow {
        role: proto::Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("client {name}: unknown role {role:?}")))?,
        namespace: r.get(2)?,
        state: ClientState::parse(&state)?,
        cert_serial: r.get(4)?,
        not_after: u(r.get(5)?),
        created_at: u(r.get(6)?),
        created_by: r.get(7)?,
        name,
    })
}

impl Tx<'_> {
    /// A client by name.
    pub fn client(&self, name: &str) -> Result<Option<ClientRow>, StoreError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM clients WHERE name = ?1"),
            params![name],
        )?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    /// Every client, by name.
    pub fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        self.0
            .query(
                &format!("SELECT {COLUMNS} FROM clients ORDER BY name"),
                params![],
            )?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Inserts a client, or replaces a revoked one of the same name.
    pub fn put_client(&self, c: &ClientRow) -> Result<(), StoreError> {
        self.0.exec(
            &format!(
                "INSERT INTO clients ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, namespace = excluded.namespace, \
                 state = excluded.state, cert_serial = excluded.cert_serial, not_after = excluded.not_after, \
                 created_at = excluded.created_at, created_by = excluded.created_by, revoked_at = NULL"
            ),
            params![
                c.name,
                c.role.as_str(),
                c.namespace,
                c.state.as_str(),
                c.cert_serial,
                i(c.not_after),
                i(c.created_at),
                c.created_by
            ],
        )?;
        Ok(())
    }

    /// Marks a client revoked.
    pub fn revoke_client(&self, name: &str, at: u64) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE clients SET state = 'revoked', revoked_at = ?2 WHERE name = ?1",
            params![name, i(at)],
        )?;
        Ok(())
    }

    /// Records a renewed certificate for an active client.
    pub fn renew_client(&self, name: &str, serial: &str, not_after: u64) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE clients SET cert_serial = ?2, not_after = ?3 WHERE name = ?1 AND state = 'active'",
            params![name, serial, i(not_after)],
        )?;
        Ok(())
    }
}
