//! Enrollments: pending requests to approve (confirming labels and GPUs)
//! or reject, and enrolled nodes to revoke.

use std::fmt::Write as _;

use proto::NodeInfo;

use super::nodes::{confirm_form, node_link, revoke_form};
use super::{action, ago, esc};

fn label_list(labels: &[String]) -> String {
    if labels.is_empty() {
        return "none".into();
    }
    labels
        .iter()
        .map(|l| format!("<span class=\"label\">{}</span>", esc(l)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pending enrollments (approve with the labels and GPU cap to confirm,
/// or reject) and a page of enrolled nodes (revoke); `next` pages on.
///
/// A pending request's `labels` are its token's (confirmed by whoever made
/// the token) and `proposed_labels` what the node asked for beyond them:
/// a claim. The approval form starts with the token's labels and GPU cap;
/// a proposal becomes a label only if the admin ticks it.
pub fn enrollments(
    pending_nodes: &[NodeInfo],
    page: &[NodeInfo],
    csrf: &str,
    now: u64,
    next: Option<&str>,
) -> String {
    let mut pending = String::new();
    for n in pending_nodes {
        let _ = write!(
            pending,
            "<tr><td class=\"node\">{name}</td><td><code>{fp}</code></td><td>{token}</td><td>{asked}</td>\
             <td>{cap}</td><td>{from}</td><td class=\"nowrap\">{age}</td><td class=\"decide\">{approve}{reject}</td></tr>",
            name = esc(&n.name),
            fp = esc(&n.fingerprint),
            token = label_list(&n.labels),
            asked = label_list(&n.proposed_labels),
            cap = n
                .max_gpus
                .map(|g| g.to_string())
                .unwrap_or_else(|| "none".into()),
            from = esc(n.remote_addr.as_deref().unwrap_or("-")),
            age = ago(n.requested_at, now),
            approve = confirm_form(
                n,
                csrf,
                &format!(
                    "Approve {} with key {}, and the labels and GPUs in the form?",
                    n.name, n.fingerprint
                ),
                "Approve",
                "enrollments",
            ),
            reject = action(
                &format!("nodes/{}/reject", n.name),
                "Reject",
                csrf,
                None,
                ""
            ),
        );
    }
    if pending.is_empty() {
        pending.push_str("<tr><td colspan=\"8\">no pending requests</td></tr>");
    }
    let mut enrolled = String::new();
    for n in page
        .iter()
        .filter(|n| matches!(n.connection.as_str(), "connected" | "offline"))
    {
        let _ = write!(
            enrolled,
            "<tr><td class=\"node\">{name}</td><td><span class=\"tag tag-{c}\">{c}</span></td><td><code>{fp}</code></td><td>{revoke}</td></tr>",
            name = node_link(&n.name),
            c = esc(&n.connection),
            fp = esc(&n.fingerprint),
            revoke = revoke_form(n, csrf, ""),
        );
    }
    format!(
        "<h1>Enrollments</h1>\
         <table class=\"list\"><caption>pending requests: compare each fingerprint with the one the node printed; \
         approving confirms the labels and GPU cap in its form</caption>\
         <thead><tr><th scope=\"col\">node</th><th scope=\"col\">key fingerprint</th>\
         <th scope=\"col\">token's labels</th><th scope=\"col\">labels the node proposed</th>\
         <th scope=\"col\">token's GPU cap</th>\
         <th scope=\"col\">from</th><th scope=\"col\">asked</th><th scope=\"col\">decide</th></tr></thead><tbody>{pending}</tbody></table>\
         <table class=\"list\"><caption>enrolled nodes</caption><thead><tr><th scope=\"col\">node</th><th scope=\"col\">connection</th>\
         <th scope=\"col\">key fingerprint</th><th scope=\"col\">revoke</th></tr></thead><tbody>{enrolled}</tbody></table>{more}",
        more = next
            .map(|n| format!(
                "<p><a href=\"enrollments?after={}\">next nodes</a></p>",
                esc(n)
            ))
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::node;
    use super::*;

    #[test]
    fn a_pending_request_shows_the_tokens_labels_and_the_nodes_proposals() {
        let mut p = node("new-1", "-", &[]);
        p.connection = "pending".into();
        p.telemetry = None;
        p.labels = vec!["cpu".into(), "zone-a".into()];
        p.proposed_labels = vec!["<gpu>".into()];
        p.max_gpus = None;
        p.fingerprint = "SHA256:abc".into();
        p.remote_addr = Some("10.0.0.5:4000".into());
        let enrolled = node("old", "healthy", &[]);
        let html = enrollments(&[p.clone()], &[enrolled], "c5rf", 10, Some("old"));
        // The token's labels and the node's proposal, in their columns.
        assert!(
            html.contains(
                "<td><span class=\"label\">cpu</span> <span class=\"label\">zone-a</span></td>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<td><span class=\"label\">&lt;gpu&gt;</span></td>"),
            "{html}"
        );
        assert!(!html.contains("<gpu>"));
        // The form confirms labels (starting with the token's), offers the
        // proposal unticked, and a GPU cap (none from this token).
        let form = &html[html.find("action=\"nodes/new-1/approve\"").unwrap_or(0)..];
        assert!(
            form.contains("name=\"labels\" value=\"cpu,zone-a\""),
            "{form}"
        );
        assert!(
            form.contains("<input type=\"checkbox\" name=\"propose\" value=\"&lt;gpu&gt;\">"),
            "{form}"
        );
        assert!(!form.contains("checked"));
        assert!(form.contains("name=\"gpus\" type=\"number\" min=\"0\" max=\"1024\" value=\"\""));
        assert!(form.contains("name=\"fingerprint\" value=\"SHA256:abc\""));
        assert!(form.contains("name=\"from\" value=\"enrollments\""));
        assert!(html.contains("data-confirm=\"Approve new-1 with key SHA256:abc"));
        assert!(html.contains("action=\"nodes/new-1/reject\""));
        assert!(html.contains("action=\"nodes/old/revoke\""));
        assert!(html.contains("\"enrollments?after=old\""));
        // A token's GPU cap fills the form.
        p.max_gpus = Some(2);
        let capped = enrollments(&[p], &[], "c", 10, None);
        assert!(capped.contains("max=\"1024\" value=\"2\""), "{capped}");
        assert!(enrollments(&[], &[], "c", 0, None).contains("no pending requests"));
    }
}
