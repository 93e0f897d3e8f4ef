//! Kernel key rings: storage the kernel keeps outside any file system,
//! which two jobs must not share.
//!
//! Two ways a job could reach another's keys, both confirmed:
//!
//! * **The session key ring is inherited.** Every process started by the
//!   agent has the agent's session key ring (systemd gives a service one
//!   of its own; a login shell has one), and every process that has it may
//!   use it with the possessor's rights, whatever its uid. A job that adds
//!   a key there hands it to every other job, running or later. The shim,
//!   still root, closes that key ring to everyone but its owner
//!   ([`close_inherited_session`]): the jobs keep a session key ring they
//!   can no longer read, write or search. A job that wants one makes its
//!   own (`keyctl new_session`).
//! * **The key rings of a uid outlive its processes.** The user, user
//!   session and persistent key rings belong to the uid, not to a process;
//!   a later job given the same `job_uids` uid would find what an earlier
//!   one left (Kerberos tickets in `KEYRING:persistent`, tokens). The shim,
//!   as the job's uid, empties them before the command starts
//!   ([`empty_uid_keyrings`]). Only for a uid of `job_uids`, which no other
//!   running job and no account has: the key rings of a `run_as` account
//!   are shared with whoever else runs as it.
//!
//! Everything goes through `linux-keyutils`' safe calls; a kernel without
//! key rings (or without persistent ones) has nothing to close or empty.

use linux_keyutils::{
    Key, KeyError, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, KeySerialId, Permission,
};

/// `ENOSYS`: the kernel has no key rings at all.
const ENOSYS: i32 = 38;

/// Whether `e` says the kernel lacks the feature (then nothing is kept).
fn unsupported(e: &KeyError) -> bool {
    matches!(
        e,
        KeyError::OperationNotSupported | KeyError::Unknown(ENOSYS)
    )
}

/// The rights on the inherited session key ring once closed: all for its
/// owner (root: the agent and its shims), none for a possessor that is
/// not the owner (a job), nor for anyone else.
fn closed() -> linux_keyutils::KeyPermissions {
    KeyPermissionsBuilder::builder()
        .posessor(Permission::empty())
        .user(Permission::ALL)
        .group(Permission::empty())
        .world(Permission::empty())
        .build()
}

/// Closes this process's session key ring to processes that merely hold
/// it (see the module). Runs in the shim as root, before privileges are
/// dropped. A process without a session key ring gets a new, closed one,
/// never the agent user's own.
pub fn close_inherited_session() -> Result<(), String> {
    let session = Key::from_id(KeySerialId::new(KeyRingIdentifier::Session as i32));
    match session.set_perms(closed()) {
        Ok(()) => Ok(()),
        Err(e) if unsupported(&e) => Ok(()),
        Err(e) => Err(format!(
            "cannot close the agent's session key ring to the job ({e:?})"
        )),
    }
}

/// Empties the user, user-session and persistent key rings of this
/// process's uid (see the module). Runs in the shim as the job's uid.
pub fn empty_uid_keyrings() -> Result<(), String> {
    let fail =
        |which: &str, e: KeyError| format!("cannot empty the uid's {which} key ring ({e:?})");
    // Linked into the process key ring, which this process holds (so it
    // may empty it) and which exec discards.
    match KeyRing::get_persistent(KeyRingIdentifier::Process) {
        Ok(p) => p.clear().map_err(|e| fail("persistent", e))?,
        Err(e) if unsupported(&e) => {}
        Err(e) => return Err(fail("persistent", e)),
    }
    for (which, id) in [
        ("user", KeyRingIdentifier::User),
        ("user session", KeyRingIdentifier::UserSession),
    ] {
        match KeyRing::from_special_id(id, true).and_then(|k| k.clear()) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(fail(which, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_session_ring_is_the_owners_alone() {
        // Possessor, user, group, other: a byte each, highest first.
        assert_eq!(closed().bits(), 0x003f_0000);
        assert!(unsupported(&KeyError::OperationNotSupported));
        assert!(unsupported(&KeyError::Unknown(ENOSYS)));
        assert!(!unsupported(&KeyError::AccessDenied));
    }
}
