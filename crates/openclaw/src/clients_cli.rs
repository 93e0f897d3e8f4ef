//! `openclaw client create | list | revoke | renew`, and `openclaw ca`.

use client::Client;
use mesh::Home;
use mesh::home::client_files;
use proto::{Request, Response};

use crate::commands::{CliError, call, done, duration_arg, print_json, unexpected, usage};
use crate::term::{errln, outln};
use crate::{CaCmd, ClientCmd, RotatePhase};
use crate::{exit, output};

/// Runs one `client` subcommand.
pub async fn run(home: &Home, cmd: ClientCmd) -> Result<(), CliError> {
    match cmd {
        ClientCmd::Create {
            name,
            role,
            namespace,
            ttl,
            out,
        } => {
            let ttl = ttl
                .map(|t| duration_arg("--ttl", &t).map(|d| d.as_secs()))
                .transpose()?;
            create(home, &name, &role, namespace, ttl, &out).await
        }
        ClientCmd::List { json } => match call(home, Request::ClientList).await? {
            Response::Clients(list) => {
                if json {
                    let v: Vec<_> = list
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "name": c.name, "role": c.role.as_str(), "namespace": c.namespace,
                                "state": c.state, "serial": c.serial, "not_after": c.not_after,
                                "created_at": c.created_at, "created_by": c.created_by,
                                "connections": c.connections,
                            })
                        })
                        .collect();
                    print_json(&serde_json::Value::Array(v))
                } else {
                    let now = gateway::unix_now();
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                c.role.to_string(),
                                c.namespace.clone().unwrap_or_else(|| "-".into()),
                                c.state.clone(),
                                output::until(c.not_after, now),
                                c.connections.to_string(),
                                c.created_by.clone(),
                            ]
                        })
                        .collect();
                    crate::term::out(&output::table(
                        &[
                            "NAME",
                            "ROLE",
                            "NAMESPACE",
                            "STATE",
                            "EXPIRES",
                            "CONNECTIONS",
                            "CREATED-BY",
                        ],
                        &rows,
                    ));
                    Ok(())
                }
            }
            r => Err(unexpected(r)),
        },
        ClientCmd::Revoke { name } => done(call(home, Request::ClientRevoke { name }).await?),
        ClientCmd::Renew => renew(home).await,
    }
}

fn fail(e: &dyn std::fmt::Display) -> CliError {
    CliError::new(exit::FAILURE, e.to_string())
}

async fn create(
    home: &Home,
    name: &str,
    role: &str,
    namespace: Option<String>,
    ttl_secs: Option<u64>,
    out: &std::path::Path,
) -> Result<(), CliError> {
    let role = match proto::Role::parse(role) {
        Some(r @ (proto::Role::Admin | proto::Role::Bot | proto::Role::User)) => r,
        _ => {
            return Err(usage(format!(
                "--role {role:?}: use admin, user (a lab member: runs jobs, sees its own) or bot (nodes enroll with 'openclaw node enroll')"
            )));
        }
    };
    issue(home, name, role, namespace.clone(), ttl_secs, out).await?;
    if role == proto::Role::Admin {
        errln!(
            "openclaw: note: an admin credential may do everything (join tokens, approvals, \
             revocations, every job's output); give a lab member --role user"
        );
    }
    match &namespace {
        Some(ns) => outln!(
            "wrote {} {role} credential for {name}, speaking for {ns}/..., to {}",
            article(role),
            out.display()
        ),
        None => outln!(
            "wrote {} {role} credential for {name} to {}",
            article(role),
            out.display()
        ),
    }
    outln!("use it with: openclaw --home {} whoami", out.display());
    Ok(())
}

/// Has the gateway that `home` reaches sign a new admin or bot credential
/// for `name`, with a key made here, and writes it to the home `out`
/// (`client create`, and the lab's chat user).
pub async fn issue(
    home: &Home,
    name: &str,
    role: proto::Role,
    namespace: Option<String>,
    ttl_secs: Option<u64>,
    out: &std::path::Path,
) -> Result<(), CliError> {
    proto::names::validate_name(name).map_err(|e| usage(format!("invalid client name: {e}")))?;
    if let Some(ns) = &namespace {
        proto::identity::validate_namespace(ns).map_err(|e| usage(format!("--namespace: {e}")))?;
    }
    let out_home = Home::new(out);
    if out_home.exists(client_files::CERT) {
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "{} already holds a client credential; choose another --out",
                out.display()
            ),
        ));
    }
    let key = pki::generate_key().map_err(|e| fail(&e))?;
    let csr = pki::make_csr(name, &key.key_pem).map_err(|e| fail(&e))?;
    let client = Client::connect(home).await?;
    // A leader and standbys: the new credential gets the whole list this
    // one has, so it follows a failover too.
    let gateway = mesh::home::LoadedCredential::load(home)
        .ok()
        .map(|c| c.gateway)
        .filter(|g| mesh::gateway_list(g).len() > 1)
        .unwrap_or_else(|| client.addr().to_string());
    let resp = client
        .call(Request::ClientIssue {
            name: name.to_string(),
            role,
            namespace: namespace.clone(),
            ttl_secs,
            csr_der: csr,
        })
        .await;
    client.close().await;
    match resp? {
        Response::ClientIssued { cert_der, ca_der } => {
            out_home.create().map_err(|e| fail(&e))?;
            mesh::home::Credential {
                name: name.to_string(),
                gateway,
                follow_group: true,
            }
            .write(
                &out_home,
                &pki::der_to_pem(&cert_der, "CERTIFICATE"),
                &key.key_pem,
                &pki::der_to_pem(&ca_der, "CERTIFICATE"),
            )
            .map_err(|e| fail(&e))?;
            Ok(())
        }
        r => Err(unexpected(r)),
    }
}

async fn renew(home: &Home) -> Result<(), CliError> {
    if !home.exists(client_files::CERT) {
        return Err(usage(format!(
            "{} holds no client credential to renew (nodes renew themselves while 'node run' is up)",
            home.root().display()
        )));
    }
    let cred = mesh::home::LoadedCredential::load(home).map_err(|e| fail(&e))?;
    let client = Client::connect(home).await?;
    // Connecting may already have renewed it (a CA rotation): renew what
    // the home holds now.
    let cred = mesh::home::LoadedCredential::load(home).unwrap_or(cred);
    let renewed = client.renew_credential(home, &cred).await;
    client.close().await;
    let new = renewed?;
    outln!(
        "renewed {}; the new certificate is valid {}; the old one no longer works",
        new.name,
        output::until(new.not_after, gateway::unix_now())
    );
    Ok(())
}

/// Runs one `ca` subcommand.
pub async fn ca(home: &Home, cmd: CaCmd) -> Result<(), CliError> {
    let (step, force, json) = match cmd {
        CaCmd::Status { json } => (proto::CaStep::Status, false, json),
        CaCmd::Rotate { phase, force, json } => (
            match phase {
                RotatePhase::Init => proto::CaStep::Init,
                RotatePhase::Rotate => proto::CaStep::Rotate,
                RotatePhase::Finish => proto::CaStep::Finish,
            },
            force,
            json,
        ),
    };
    match call(home, Request::CaRotate { step, force }).await? {
        Response::CaRotation(info) => {
            if json {
                return print_json(&serde_json::json!({
                    "phase": info.phase,
                    "issuing_pin": info.issuing_pin,
                    "trusted_pins": info.trusted_pins,
                    "started_at": info.started_at,
                    "rotated_at": info.rotated_at,
                    "lagging_nodes": info.lagging_nodes,
                    "lagging_clients": info.lagging_clients,
                    "message": info.message,
                }));
            }
            let now = gateway::unix_now();
            outln!("phase:    {}", info.phase);
            outln!("issuing:  {}", info.issuing_pin);
            for pin in info.trusted_pins.iter().skip(1) {
                outln!("also trusted: {pin}");
            }
            if let Some(at) = info.started_at {
                outln!("started:  {}", output::ago(at, now));
            }
            if let Some(at) = info.rotated_at {
                outln!("rotated:  {}", output::ago(at, now));
            }
            if info.phase != "idle" {
                let list = |names: &[String]| {
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                };
                outln!(
                    "not yet on the issuing CA: nodes {}; clients {}",
                    list(&info.lagging_nodes),
                    list(&info.lagging_clients)
                );
            }
            outln!("{}", info.message);
            Ok(())
        }
        r => Err(unexpected(r)),
    }
}

/// "a" or "an" before a role's name ("an admin credential"). Pure.
fn article(role: impl std::fmt::Display) -> &'static str {
    if role.to_string().starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
