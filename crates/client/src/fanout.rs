//! Following a fan-out to its end, and resuming after the gateway goes
//! away: the one fan-out follower, used by `openclaw run --all`, the chat
//! prompt and the chat engine, as [`crate::follow_job`] is for one job.
//!
//! The gateway's `FanOutAttach` replays every member from its first byte,
//! so the follower counts what it handed over per member and stream and,
//! after a reconnect, skips what it already gave: each byte, each state
//! change and each end reaches the caller once.

use std::sync::Arc;

use proto::{ApiError, FanEvent, FanInfo, JobInfo, OutStream, Request};

use crate::follow::{lost_reason, retrying};
use crate::{Client, ClientError, FollowError, FollowOptions, Gateway};

/// What a fan-out follower hands its caller, in order.
#[derive(Debug)]
pub enum FanFollowed<'a> {
    /// The fan-out was accepted (first, once; not for
    /// [`FanStart::Stream`], whose caller read it).
    Accepted(&'a FanInfo),
    /// A member changed state (not its end).
    State {
        /// Which member ([`FanInfo::members`] index).
        member: u32,
        /// Its new state word.
        state: &'a str,
    },
    /// A member's output, exactly once per byte.
    Output {
        /// Which member.
        member: u32,
        /// Which stream.
        stream: OutStream,
        /// The bytes.
        data: &'a [u8],
    },
    /// A member ended: its final record (once per member).
    Ended {
        /// Which member.
        member: u32,
        /// Its job as it ended.
        job: &'a JobInfo,
    },
    /// The gateway could not follow a member; read it by job id.
    Lost {
        /// Which member.
        member: u32,
        /// Why.
        error: &'a ApiError,
    },
    /// The gateway went away; the follower is reconnecting.
    Reconnecting {
        /// The fan-out.
        id: u64,
        /// What happened.
        why: &'a str,
    },
    /// Re-attached; what was handed over already is not repeated.
    Resumed {
        /// The fan-out.
        id: u64,
    },
}

/// Where to start following a fan-out.
pub enum FanStart {
    /// A `FanOut` stream already opened on the client; the fan-out comes
    /// with its `Accepted` event.
    Run(Arc<Client>, quinn::RecvStream),
    /// A fan-out stream whose `Accepted` (this) was read already.
    Stream(Box<FanInfo>, Arc<Client>, quinn::RecvStream),
    /// Attach to fan-out `.0` from its start.
    Attach(u64),
}

/// What the follower handed over of one member.
#[derive(Debug, Default)]
struct Member {
    /// Bytes of stdout and stderr handed to the caller.
    given: [u64; 2],
    /// Bytes of stdout and stderr received over the current attachment.
    heard: [u64; 2],
    state: Option<String>,
    ended: bool,
    lost: bool,
}

/// What the follower handed over of every member, which decides what of
/// an attachment's events is new: after a reconnect the gateway replays
/// each member from its first byte. Pure.
#[derive(Debug, Default)]
struct Seen {
    members: Vec<Member>,
}

impl Seen {
    /// Nothing seen yet of `n` members.
    fn new(n: usize) -> Seen {
        let mut members = Vec::new();
        members.resize_with(n, Member::default);
        Seen { members }
    }

    fn member(&mut self, member: u32) -> Option<&mut Member> {
        usize::try_from(member)
            .ok()
            .and_then(|i| self.members.get_mut(i))
    }

    /// `len` more bytes of `member`'s `stream`: how many of them to skip
    /// as handed over already, or `None` when none is new (or the member
    /// is unknown).
    fn output(&mut self, member: u32, stream: OutStream, len: usize) -> Option<usize> {
        let m = self.member(member)?;
        let s = usize::from(stream == OutStream::Stderr);
        let len = len as u64;
        let skip = m.given[s].saturating_sub(m.heard[s]).min(len);
        m.heard[s] += len;
        if skip == len {
            return None;
        }
        m.given[s] += len - skip;
        usize::try_from(skip).ok()
    }

    /// Whether `member` moving to `state` is news.
    fn state(&mut self, member: u32, state: &str) -> bool {
        match self.member(member) {
            Some(m) if !m.ended && m.state.as_deref() != Some(state) => {
                m.state = Some(state.to_string());
                true
            }
            _ => false,
        }
    }

    /// Whether `member`'s end is news.
    fn ended(&mut self, member: u32) -> bool {
        self.member(member)
            .is_some_and(|m| !std::mem::replace(&mut m.ended, true))
    }

    /// Whether the gateway losing `member` is news.
    fn lost(&mut self, member: u32) -> bool {
        self.member(member)
            .is_some_and(|m| !m.ended && !std::mem::replace(&mut m.lost, true))
    }

    /// A new attachment: its output starts again from the first byte, and
    /// a member lost before may be followed now.
    fn reattached(&mut self) {
        for m in &mut self.members {
            m.heard = [0, 0];
            m.lost = false;
        }
    }
}

/// Follows a fan-out until every member has ended, handing what happens
/// to `sink`, and returns the fan-out as it was accepted. `output` asks
/// for the members' output (false: only states and ends). Reconnects and
/// resumes (see the module docs) for up to `opts.reconnect_for`.
pub async fn follow_fanout(
    gw: &Gateway,
    start: FanStart,
    output: bool,
    opts: &FollowOptions,
    mut sink: impl FnMut(FanFollowed<'_>),
) -> Result<FanInfo, FollowError> {
    let (mut info, (mut client, mut recv)) = match start {
        FanStart::Run(c, r) => (None, (c, r)),
        FanStart::Stream(info, c, r) => (Some(*info), (c, r)),
        FanStart::Attach(id) => {
            let (info, cr) = attach(gw, id, output, opts).await?;
            sink(FanFollowed::Accepted(&info));
            (Some(info), cr)
        }
    };
    let mut seen = Seen::new(info.as_ref().map_or(0, |i| i.members.len()));
    loop {
        let lost = loop {
            let ev = match client.next_fan_event(&mut recv).await {
                Ok(Some(ev)) => ev,
                Ok(None) => break lost_reason(&client, None)?,
                Err(e) => break lost_reason(&client, Some(e))?,
            };
            match ev {
                FanEvent::Accepted(i) => {
                    if info.is_none() {
                        seen = Seen::new(i.members.len());
                        sink(FanFollowed::Accepted(&i));
                        info = Some(i);
                    }
                }
                FanEvent::State { member, state } => {
                    if seen.state(member, &state) {
                        sink(FanFollowed::State {
                            member,
                            state: &state,
                        });
                    }
                }
                FanEvent::Output {
                    member,
                    stream,
                    data,
                } => {
                    if let Some(skip) = seen.output(member, stream, data.len()) {
                        sink(FanFollowed::Output {
                            member,
                            stream,
                            data: data.get(skip..).unwrap_or_default(),
                        });
                    }
                }
                FanEvent::Ended { member, job } => {
                    if seen.ended(member) {
                        sink(FanFollowed::Ended { member, job: &job });
                    }
                }
                FanEvent::Lost { member, error } => {
                    if seen.lost(member) {
                        sink(FanFollowed::Lost {
                            member,
                            error: &error,
                        });
                    }
                }
                FanEvent::Done => {
                    return info.ok_or_else(|| {
                        FollowError::NotAccepted("the fan-out ended before it began".into())
                    });
                }
                FanEvent::Error(e) => return Err(FollowError::Api(e)),
            }
        };
        let Some(id) = info.as_ref().map(|i| i.id) else {
            return Err(FollowError::NotAccepted(lost));
        };
        sink(FanFollowed::Reconnecting { id, why: &lost });
        (_, (client, recv)) = attach(gw, id, output, opts).await?;
        seen.reattached();
        sink(FanFollowed::Resumed { id });
    }
}

/// Attaches to fan-out `id` from its start and reads its `Accepted`,
/// retrying while the gateway is away.
async fn attach(
    gw: &Gateway,
    id: u64,
    output: bool,
    opts: &FollowOptions,
) -> Result<(FanInfo, (Arc<Client>, quinn::RecvStream)), FollowError> {
    let lost = |why| FollowError::FanLost { id, why };
    retrying(opts, lost, || async {
        let c = gw.get().await?;
        let mut r = c
            .open(Request::FanOutAttach {
                id,
                output,
                on_behalf_of: opts.on_behalf_of.clone(),
            })
            .await?;
        match c.next_fan_event(&mut r).await? {
            Some(FanEvent::Accepted(info)) => Ok((info, (c, r))),
            Some(FanEvent::Error(e)) => Err(ClientError::Api(e)),
            Some(_) | None => Err(ClientError::Protocol(format!(
                "the gateway did not accept following fan-out {id}"
            ))),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: OutStream = OutStream::Stdout;
    const ERR: OutStream = OutStream::Stderr;

    #[test]
    fn a_replayed_attachment_hands_over_only_what_is_new() {
        let mut s = Seen::new(2);
        assert_eq!(s.output(0, OUT, 5), Some(0));
        assert_eq!(s.output(0, ERR, 3), Some(0));
        assert_eq!(s.output(1, OUT, 4), Some(0));
        assert!(s.state(1, "running"));
        assert!(!s.state(1, "running"), "a state once");
        assert!(s.ended(1));
        // The gateway replays every member from its first byte.
        s.reattached();
        assert_eq!(s.output(0, OUT, 2), None, "bytes 0..2 were handed over");
        assert_eq!(s.output(0, OUT, 6), Some(3), "bytes 2..5 too; 5..8 are new");
        assert_eq!(s.output(0, OUT, 1), Some(0));
        assert_eq!(s.output(0, ERR, 3), None);
        assert_eq!(s.output(1, OUT, 4), None);
        assert!(!s.ended(1), "an end once");
        assert!(!s.state(1, "exited"), "nothing after the end");
        // And again: what the second attachment handed over counts.
        s.reattached();
        assert_eq!(s.output(0, OUT, 9), None);
        assert_eq!(s.output(0, OUT, 1), Some(0));
    }

    #[test]
    fn unknown_members_are_ignored_and_lost_members_may_come_back() {
        let mut s = Seen::new(1);
        assert_eq!(s.output(7, OUT, 3), None);
        assert!(!s.state(7, "running") && !s.ended(7) && !s.lost(u32::MAX));
        assert!(s.lost(0));
        assert!(!s.lost(0), "lost once per attachment");
        s.reattached();
        assert!(s.lost(0), "a new attachment may lose it again");
        assert!(s.ended(0));
        assert!(!s.lost(0), "an ended member is not lost");
    }
}
