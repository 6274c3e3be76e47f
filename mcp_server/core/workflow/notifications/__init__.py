"""Notifications that reach a researcher away from the terminal, each event sent exactly once.

Why it is built this way:

- **Source.** The store's append-only ``events`` table is the one record of run endings and
  alerts written by every process (servers, sidecars, the CLI); its id is a cursor. Each
  target (one apprise URL) has its own cursor in ``notify_targets``, so a process that does
  not know a URL (another environment) can never move past events meant for it.
- **Exactly once.** Queueing inserts one ``notify_deliveries`` row per (target, event key)
  behind a unique index, in the same transaction that moves the target's cursor; sending
  belongs to whoever moved the row from ``pending`` to ``sending`` (a compare-and-set), and
  only that claimant may mark it. Two senders racing on one row: one claims, one sees
  rowcount 0. The one case that can repeat a message is a sender killed after the service
  accepted a message but before it was marked sent: its claim runs out and another sender
  tries again (an endpoint that timed out without answering is, likewise, tried again).
- **Who sends.** Both servers and sidecars must be able to, so a researcher is told even
  when no agent session is open (sidecars live as long as runs do). But apprise costs about
  45 MB and 0.35 s to load, and a send may hang: neither belongs in a sidecar (60 MB idle
  budget) nor beside a server's monitoring loop. So every server and sidecar runs a small
  stdlib *watch* thread (``watch``) that only looks; when a target has news and no live
  sender, it reserves the target's lease and starts one detached *sender* process
  (``sender``), which sends off every monitoring path, retries with back-off, and outlives
  the sidecar that started it until its queue is empty. Leases keep it to one sender per
  target; the compare-and-set on each message keeps it to one send even if two run.
- **Secrets.** URLs live in ``$RESEARCH_MCP_NOTIFY`` or the state dir's ``notify.json``
  (0600, git-ignored). The store, logs, argv and answers hold only a hash and a masked label.
"""
