//! Nodes, and the certificates the CA signed and revoked.

pub use proto::NodeState;

use super::sql::{self, params};
use super::{StoreError, Tx, i, join, split, u};

/// A node row.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// Name.
    pub name: String,
    /// Enrollment state.
    pub state: NodeState,
    /// Confirmed labels (token or admin); routing uses only these.
    pub labels: Vec<String>,
    /// Labels the node proposed that nobody confirmed.
    pub proposed_labels: Vec<String>,
    /// Most GPUs the node may offer.
    pub max_gpus: Option<u32>,
    /// Key fingerprint.
    pub fingerprint: String,
    /// Public key DER.
    pub spki: Vec<u8>,
    /// Poll id.
    pub request_id: String,
    /// Unix seconds.
    pub requested_at: u64,
    /// Source of the request.
    pub request_addr: String,
    /// Token used.
    pub token_id: String,
    /// Current certificate.
    pub cert_der: Option<Vec<u8>>,
    /// Its serial.
    pub cert_serial: Option<String>,
    /// Its expiry.
    pub cert_not_after: Option<u64>,
    /// Last session start or end.
    pub last_seen: Option<u64>,
    /// Last session address.
    pub last_addr: Option<String>,
}

#[cfg(test)]
impl NodeRow {
    /// A row for tests: `name` in `state` with key `fingerprint`, asked for
    /// at `requested_at`, nothing else set.
    pub fn for_test(name: &str, state: NodeState, fingerprint: &str, requested_at: u64) -> NodeRow {
        NodeRow {
            name: name.into(),
            state,
            labels: vec![],
            fingerprint: fingerprint.into(),
            spki: vec![],
            request_id: format!("req-{name}"),
            requested_at,
            request_addr: String::new(),
            token_id: String::new(),
            cert_der: None,
            cert_serial: None,
            cert_not_after: None,
            last_seen: None,
            last_addr: None,
            proposed_labels: vec![],
            max_gpus: None,
        }
    }
}

const NODE_COLUMNS: &str = "name, state, labels, fingerprint, spki, request_id, requested_at, request_addr, \
     token_id, cert_der, cert_serial, cert_not_after, last_seen, last_addr, proposed_labels, max_gpus";

fn node_from_row(r: &sql::Row) -> Result<NodeRow, StoreError> {
    let state: String = r.get(1)?;
    Ok(NodeRow {
        name: r.get(0)?,
        state: NodeState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown node state {state:?}")))?,
        labels: split(&r.get::<_, String>(2)?),
        fingerprint: r.get(3)?,
        spki: r.get(4)?,
        request_id: r.get(5)?,
        requested_at: u(r.get(6)?),
        request_addr: r.get(7)?,
        token_id: r.get(8)?,
        cert_der: r.get(9)?,
        cert_serial: r.get(10)?,
        cert_not_after: r.get::<_, Option<i64>>(11)?.map(u),
        last_seen: r.get::<_, Option<i64>>(12)?.map(u),
        last_addr: r.get(13)?,
        proposed_labels: split(&r.get::<_, String>(14)?),
        max_gpus: r
            .get::<_, Option<i64>>(15)?
            .map(|g| u32::try_from(g).unwrap_or(0)),
    })
}

impl Tx<'_> {
    /// Nodes selected by `sql` (which lists `NODE_COLUMNS`).
    fn node_rows(&self, sql: &str, p: &[sql::Val]) -> Result<Vec<NodeRow>, StoreError> {
        self.0.query(sql, p)?.iter().map(node_from_row).collect()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Result<Option<NodeRow>, StoreError> {
        Ok(self
            .node_rows(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?1"),
                params![name],
            )?
            .pop())
    }

    /// Deletes a node's row (`node release`).
    pub fn delete_node(&self, name: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM nodes WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// A node by enrollment request id.
    pub fn node_by_request(&self, request_id: &str) -> Result<Option<NodeRow>, StoreError> {
        Ok(self
            .node_rows(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE request_id = ?1"),
                params![request_id],
            )?
            .pop())
    }

    /// All nodes by name.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.node_rows(
            &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"),
            params![],
        )
    }

    /// Nodes by name after `after`, at most `limit` (one page of `node list`).
    pub fn nodes_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NodeRow>, StoreError> {
        self.node_rows(
            &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name > ?1 ORDER BY name LIMIT ?2"),
            params![
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    /// Number of pending requests.
    pub fn pending_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .one(
                "SELECT count(*) FROM nodes WHERE state = ?1",
                params![NodeState::Pending.as_str()],
            )?
            .map_or(Ok(0), |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Deletes pending requests older than `cutoff`; returns their names.
    pub fn expire_pending(&self, cutoff: u64) -> Result<Vec<String>, StoreError> {
        self.texts(
            "DELETE FROM nodes WHERE state = ?2 AND requested_at < ?1 RETURNING name",
            params![i(cutoff), NodeState::Pending.as_str()],
        )
    }

    /// Inserts or replaces a node row (a new request for a rejected or revoked name).
    pub fn put_node(&self, n: &NodeRow) -> Result<(), StoreError> {
        self.0.exec(
            &format!(
                "INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
                 ON CONFLICT (name) DO UPDATE SET state = excluded.state, labels = excluded.labels, \
                 fingerprint = excluded.fingerprint, spki = excluded.spki, request_id = excluded.request_id, \
                 requested_at = excluded.requested_at, request_addr = excluded.request_addr, \
                 token_id = excluded.token_id, decided_at = NULL, decided_by = NULL, cert_der = excluded.cert_der, \
                 cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after, \
                 last_seen = excluded.last_seen, last_addr = excluded.last_addr, \
                 proposed_labels = excluded.proposed_labels, max_gpus = excluded.max_gpus"
            ),
            params![
                n.name,
                n.state.as_str(),
                join(&n.labels),
                n.fingerprint,
                n.spki,
                n.request_id,
                i(n.requested_at),
                n.request_addr,
                n.token_id,
                n.cert_der,
                n.cert_serial,
                n.cert_not_after.map(i),
                n.last_seen.map(i),
                n.last_addr,
                join(&n.proposed_labels),
                n.max_gpus
            ],
        )?;
        Ok(())
    }

    /// Moves a node from state `from` to `to` along
    /// [`NodeState::can_move_to`], if and only if it is still in `from`
    /// (`UPDATE … WHERE state = ?`); anything else writes nothing and is
    /// an error.
    pub fn move_node(
        &self,
        name: &str,
        from: NodeState,
        to: NodeState,
        at: u64,
        by: &str,
    ) -> Result<(), StoreError> {
        if !from.can_move_to(to) {
            return Err(StoreError::Refused(format!(
                "node {name}: illegal state change {from} -> {to}"
            )));
        }
        let n = self.0.exec(
            "UPDATE nodes SET state = ?2, decided_at = ?3, decided_by = ?4 WHERE name = ?1 AND state = ?5",
            params![name, to.as_str(), i(at), by, from.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::Refused(format!(
                "node {name} is no longer {from}; nothing was changed"
            )));
        }
        Ok(())
    }

    /// Records a node's certificate.
    pub fn set_node_cert(&self, name: &str, cert: &pki::IssuedCert) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET cert_der = ?2, cert_serial = ?3, cert_not_after = ?4 WHERE name = ?1",
            params![name, cert.der, cert.serial, i(cert.not_after)],
        )?;
        Ok(())
    }

    /// Sets what an admin confirmed about a node: its labels (routing uses
    /// only these), the labels still unconfirmed, and its GPU cap.
    pub fn set_node_facts(
        &self,
        name: &str,
        labels: &[String],
        proposed: &[String],
        max_gpus: Option<u32>,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET labels = ?2, proposed_labels = ?3, max_gpus = ?4 WHERE name = ?1",
            params![name, join(labels), join(proposed), max_gpus],
        )?;
        Ok(())
    }

    /// Records the start or end of a node session.
    pub fn node_seen(&self, name: &str, at: u64, addr: &str) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET last_seen = ?2, last_addr = ?3 WHERE name = ?1",
            params![name, i(at), addr],
        )?;
        Ok(())
    }

    /// Records a signed certificate.
    pub fn record_issued(
        &self,
        name: &str,
        role: proto::Role,
        cert: &pki::IssuedCert,
        at: u64,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO issued_certs (serial, name, role, issued_at, not_after, ca) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![cert.serial, name, role.as_str(), i(at), i(cert.not_after), cert.ca_pin],
        )?;
        Ok(())
    }

    /// Serials of active clients' current certificates that the CA pinned
    /// `ca_pin` (hex) did not sign.
    pub fn client_serials_not_on_ca(&self, ca_pin: &str) -> Result<Vec<String>, StoreError> {
        self.texts(
            "SELECT k.cert_serial FROM clients k LEFT JOIN issued_certs c ON c.serial = k.cert_serial \
             WHERE k.state = 'active' AND (c.ca IS NULL OR c.ca != ?1)",
            params![ca_pin],
        )
    }

    /// Approved nodes and active clients whose current certificate was not
    /// signed by the CA pinned `ca_pin` (hex), by name.
    pub fn not_on_ca(&self, ca_pin: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let nodes = self.texts(
            "SELECT n.name FROM nodes n LEFT JOIN issued_certs c ON c.serial = n.cert_serial \
             WHERE n.state = ?2 AND (c.ca IS NULL OR c.ca != ?1) ORDER BY n.name",
            params![ca_pin, NodeState::Approved.as_str()],
        )?;
        let clients = self.texts(
            "SELECT k.name FROM clients k LEFT JOIN issued_certs c ON c.serial = k.cert_serial \
             WHERE k.state = 'active' AND (c.ca IS NULL OR c.ca != ?1) ORDER BY k.name",
            params![ca_pin],
        )?;
        Ok((nodes, clients))
    }

    /// Revokes a serial.
    pub fn revoke_serial(&self, serial: &str, name: &str, at: u64) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO revoked_certs (serial, name, revoked_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (serial) DO NOTHING",
            params![serial, name, i(at)],
        )?;
        Ok(())
    }

    /// Every revoked serial.
    pub fn revoked_serials(&self) -> Result<Vec<String>, StoreError> {
        self.texts("SELECT serial FROM revoked_certs", params![])
    }
}
