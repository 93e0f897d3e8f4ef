//! Making a gateway home: `gateway init` (SQLite or PostgreSQL state),
//! `gateway join` (a standby sharing PostgreSQL state), and opening the
//! state a home's configuration names.

use std::net::SocketAddr;

use mesh::Home;
use proto::Role;

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::store::{self, Store};
use crate::{ADMIN_CERT_TTL, GatewayError, SERVER_CERT_TTL, files, migrate, rotation};

/// Opens the state the configuration names: embedded SQLite in `home`, or
/// PostgreSQL at `[state] url` (password from `PGPASSWORD`, else
/// `[state] password_file`, which must not be readable by others).
pub fn open_state(home: &Home, state: &config::StateConfig) -> Result<Store, GatewayError> {
    let Some(url) = &state.url else {
        return Ok(Store::open(&home.path(files::STATE))?);
    };
    let read = |what: &str, file: &str, private: bool| -> Result<String, GatewayError> {
        let path = home.root().join(file);
        let dir = Home::new(path.parent().unwrap_or(home.root()));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let hint = format!("fix [state] {what} in gateway.toml");
        Ok(if private {
            dir.read_private(name, &hint)?
        } else {
            dir.read_text(name, &hint)?
        })
    };
    let password = match std::env::var("PGPASSWORD") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => state
            .password_file
            .as_deref()
            .map(|f| {
                read("password_file", f, true).map(|p| p.trim_end_matches(['\n', '\r']).to_string())
            })
            .transpose()?,
    };
    let ca_pem = state
        .ca_file
        .as_deref()
        .map(|f| read("ca_file", f, false).map(String::into_bytes))
        .transpose()?;
    Ok(Store::open_postgres(&store::PgOptions {
        url: url.clone(),
        password,
        ca_pem,
        pool_size: state.pool_size,
    })?)
}

/// What `init` reports.
#[derive(Debug)]
pub struct InitReport {
    /// `sha256:<hex>` pin of the CA.
    pub ca_pin: String,
}

/// Creates a gateway home: CA, server certificate, state, config, and the
/// admin client credential. Refuses to overwrite an existing CA.
pub fn init(
    home: &Home,
    listen: &str,
    name: &str,
    advertise: Option<&str>,
) -> Result<InitReport, GatewayError> {
    init_with_state(home, listen, name, advertise, None)
}

/// [`init`], with the state in PostgreSQL when `state` names it (the
/// first gateway of a leader and its standbys; `gateway init --state`).
/// The database must be empty.
pub fn init_with_state(
    home: &Home,
    listen: &str,
    name: &str,
    advertise: Option<&str>,
    state: Option<&config::StateConfig>,
) -> Result<InitReport, GatewayError> {
    check_name_and_advertise(name, listen, advertise)?;
    if home.exists(files::CA_KEY) || home.exists(files::CA_CERT) {
        return Err(GatewayError::Io(format!(
            "{} already holds a CA; refusing to overwrite it. Use another --home, or remove that directory to start over",
            home.root().display()
        )));
    }
    // Shared state that already holds a mesh: refuse before any file is
    // written, so the home stays empty.
    if let Some(state) = state {
        store::on_own_thread("gateway init panicked", || -> Result<(), GatewayError> {
            let store = open_state(home, state)?;
            if store.tx(|tx| tx.client("admin"))?.is_some() {
                return Err(GatewayError::Io(
                        "the state database already belongs to a gateway; add this one with 'openclaw gateway join'".into(),
                    ));
            }
            Ok(())
        })?;
    }
    home.create()?;
    let now = Clock::system().unix();
    let (ca_pem, ca_key) = pki::generate_ca(name, now)?;
    let ca = pki::Ca::load(&ca_pem, &ca_key)?;
    let admin_key = pki::generate_key()?;
    let admin = ca.issue_client(
        "admin",
        Role::Admin,
        &admin_key.spki_der,
        ADMIN_CERT_TTL.as_secs(),
        now,
    )?;

    write_ca_and_server_cert(home, &ca, &ca_pem, &ca_key, name, now)?;
    if !home.exists(files::CONFIG) {
        let mut text = Config::template(name, listen, advertise);
        if let Some(state) = state {
            text = migrate::set_state(&text, state);
        }
        home.write_public(files::CONFIG, text.as_bytes())?;
    }
    // One-off setup before any serving: blocking here is intended, even
    // when a CLI calls it from inside its runtime; on a thread of its own,
    // which the PostgreSQL client needs.
    store::on_own_thread("gateway init panicked", || -> Result<(), GatewayError> {
        let store = match state {
            Some(state) => open_state(home, state)?,
            None => Store::open(&home.path(files::STATE))?,
        };
        store.tx(|tx| {
            if tx.client("admin")?.is_some() {
                return Err(store::StoreError::Refused(
                    "the state database already belongs to a gateway; add this one with 'openclaw gateway join'".into(),
                ));
            }
            if state.is_some() {
                register_if_known(tx, name, listen, advertise, now)?;
            }
            tx.record_issued("admin", Role::Admin, &admin, now)?;
            tx.put_client(&store::ClientRow {
                name: "admin".into(),
                role: Role::Admin,
                namespace: None,
                state: store::ClientState::Active,
                cert_serial: admin.serial.clone(),
                not_after: admin.not_after,
                created_at: now,
                created_by: "gateway init".into(),
            })?;
            tx.audit(
                now,
                "local",
                "gateway.init",
                name,
                &format!("listen {listen}"),
            )
        })?;
        Ok(())
    })?;
    mesh::home::Credential {
        name: "admin".into(),
        gateway: client_address(listen),
        follow_group: true,
    }
    .write(home, &admin.pem, &admin_key.key_pem, &ca_pem)?;
    Ok(InitReport {
        ca_pin: format!("sha256:{}", pki::hex(&ca.pin())),
    })
}

/// Adds a gateway to state that another gateway created with
/// `init --state` (`openclaw gateway join`): a new home with its own
/// server certificate, signed by the shared CA read from `ca_from` (the
/// first gateway's home, or a mount holding its `ca.crt` and `ca.key`).
/// It starts as a standby.
pub fn join(
    home: &Home,
    listen: &str,
    name: &str,
    advertise: Option<&str>,
    ca_from: &std::path::Path,
    state: &config::StateConfig,
) -> Result<InitReport, GatewayError> {
    check_name_and_advertise(name, listen, advertise)?;
    if state.url.is_none() {
        return Err(GatewayError::Io(
            "gateway join needs --state postgres://…: only gateways on shared PostgreSQL state can lead and stand by".into(),
        ));
    }
    if home.exists(files::CA_KEY) || home.exists(files::CA_CERT) {
        return Err(GatewayError::Io(format!(
            "{} already holds a gateway; join with a new --home",
            home.root().display()
        )));
    }
    let from = Home::new(ca_from);
    if rotation::in_progress(&from)?.is_some() {
        return Err(GatewayError::Io(format!(
            "a CA rotation is in progress in {}; finish it ('openclaw ca rotate --phase finish') before a gateway joins",
            ca_from.display()
        )));
    }
    let hint =
        "--ca-from names the first gateway's home, or a directory holding its ca.crt and ca.key";
    let ca_pem = from.read_text(files::CA_CERT, hint)?;
    let ca_key = from.read_private(files::CA_KEY, hint)?;
    let ca = pki::Ca::load(&ca_pem, &ca_key)?;
    // The database must already hold this mesh, and not this name.
    store::on_own_thread("gateway join panicked", || -> Result<(), GatewayError> {
        let store = open_state(home, state)?;
        let (admin, taken) = store.tx(|tx| {
            Ok::<_, store::StoreError>((
                tx.client("admin")?.is_some(),
                tx.gateways()?.into_iter().any(|(n, _)| n == name),
            ))
        })?;
        if !admin {
            return Err(GatewayError::Io(
                    "the state database holds no gateway yet; create the first with 'openclaw gateway init --state …'".into(),
                ));
        }
        if taken {
            return Err(GatewayError::Io(format!(
                "a gateway named {name} already serves this state; pick another --name"
            )));
        }
        let now = Clock::system().unix();
        store.tx(|tx| {
            register_if_known(tx, name, listen, advertise, now)?;
            tx.audit(
                now,
                "local",
                "gateway.join",
                name,
                &format!("listen {listen}"),
            )
        })?;
        Ok(())
    })?;
    home.create()?;
    write_ca_and_server_cert(home, &ca, &ca_pem, &ca_key, name, Clock::system().unix())?;
    let text = migrate::set_state(&Config::template(name, listen, advertise), state);
    home.write_public(files::CONFIG, text.as_bytes())?;
    Ok(InitReport {
        ca_pin: format!("sha256:{}", pki::hex(&ca.pin())),
    })
}

/// Writes the CA (certificate and key) into a new gateway home, with this
/// gateway's own server certificate signed by it.
fn write_ca_and_server_cert(
    home: &Home,
    ca: &pki::Ca,
    ca_pem: &str,
    ca_key: &str,
    name: &str,
    now: u64,
) -> Result<(), GatewayError> {
    let (server, server_key) = ca.issue_server(name, SERVER_CERT_TTL.as_secs(), now)?;
    home.write_private(files::CA_KEY, ca_key.as_bytes())?;
    home.write_public(files::CA_CERT, ca_pem.as_bytes())?;
    home.write_private(files::SERVER_KEY, server_key.as_bytes())?;
    home.write_public(
        files::SERVER_CERT,
        format!("{}{}", server.pem, ca_pem).as_bytes(),
    )?;
    Ok(())
}

/// Checks the `--name` and `--advertise` of a new gateway home.
fn check_name_and_advertise(
    name: &str,
    listen: &str,
    advertise: Option<&str>,
) -> Result<(), GatewayError> {
    if let Some(a) = advertise {
        config::check_advertise(a).map_err(|msg| GatewayError::Config {
            path: "--advertise".into(),
            msg,
        })?;
        // What `token create` would refuse later, refused now: an address
        // only this machine can dial while the gateway listens beyond it.
        if let Ok(bound) = listen.parse::<SocketAddr>() {
            crate::rules::token_address(bound, a).map_err(|e| GatewayError::Config {
                path: "--advertise".into(),
                msg: e.message,
            })?;
        }
    }
    proto::names::validate_name(name).map_err(|e| GatewayError::Config {
        path: "--name".into(),
        msg: e,
    })?;
    Ok(())
}

/// Records a gateway's name and address in shared state (with port 0 the
/// gateway records the port it binds when it starts; tokens skip it
/// until then).
fn register_if_known(
    tx: &store::Tx<'_>,
    name: &str,
    listen: &str,
    advertise: Option<&str>,
    now: u64,
) -> Result<(), store::StoreError> {
    let addr = advertise.map_or_else(|| client_address(listen), str::to_string);
    tx.register_gateway(name, &addr, now)
}

/// Whether a listen address reaches beyond this machine (wildcard or a
/// non-loopback address); a host name counts as beyond.
pub fn listens_beyond_loopback(listen: &str) -> bool {
    listen
        .parse::<SocketAddr>()
        .map_or(true, |a| !a.ip().is_loopback())
}

/// The address a local client should dial for a listen address.
pub fn client_address(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            if a.is_ipv4() {
                format!("127.0.0.1:{}", a.port())
            } else {
                format!("[::1]:{}", a.port())
            }
        }
        _ => listen.to_string(),
    }
}
