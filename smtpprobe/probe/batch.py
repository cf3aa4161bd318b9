"""Many addresses at once (`check --file`): few connections, few round trips, same answers.

Checking a thousand addresses one by one means a thousand DNS lookups, a thousand TLS
handshakes and a thousand connections to the same few servers, which look like an attack to
them. `Pooled` is a conversation strategy for `probe.check.Checker`: every per-address decision
(the MX order, the staggered attempts, the opening policy, the verdict) stays the checker's,
and only how the conversations happen changes:

- each domain is resolved once, however many addresses it has;
- per MX address, one connection (or a few, `per_mx`) carries the RCPTs of many addresses, in
  pipelined transactions of up to `max_rcpt` recipients (RFC 2920; RSET between transactions,
  RFC 5321 4.1.1.5), all domains that share the MX host together;
- new connections and transactions per MX address are paced (`rate` per second), and there
  are at most `concurrency` connections in all;
- servers' limits are respected: a session ends before its refused commands reach the point
  where Postfix starts to slow down (`smtpd_soft_error_limit`, 10 by default) and another
  takes over; a 421, a dropped connection or a "too many recipients" (RFC 5321 4.5.3.1.10)
  sends the addresses concerned to a fresh transaction or session.

Results are those of checking each address alone. An answer counts only when it cannot depend
on the batching: a definite reply to RCPT (2yz, 4yz, 5yz other than 421, 452 and 552) stands
wherever it came; 452/552 only for the first address of a transaction, where a lone check
would have met them; a refused MAIL (other than 421) only in the first transaction of a fresh
session. Anything else is asked again there.

One glitch decides nothing. A session that fails before it has answered anyone (the server
hangs up after the greeting, greets with 421, says 421 to MAIL, or hangs up on the first
address of the first transaction) is the server's state, not the addresses': its addresses
wait for a fresh session, after a growing pause (`backoff`). Only after `session_failures`
such sessions in a row does the server's failure stand, and then as a lone check meets it:
a failed opening (the same for every address) for all waiting addresses at once, anything
later one address per session, each the first of a fresh session. An address that met a
hang-up as the first of a session is asked once more, alone, after another session has
worked. A server that never answered at all (refused, silent, unreachable) or answered the
opening with 5yz fails at once, as a lone check would. At the deadline, waiting addresses get
the server's last failure, or the deadline.

Scheduling is linear: per endpoint, one FIFO queue per kind of MAIL (with or without
SMTPUTF8); a transaction takes from the front until the next address does not fit, and
requeued addresses go back to the front. `check_all` feeds at most `window` addresses at a
time (`concurrent_checks`), so a list of any length needs memory for the window only.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from smtpprobe.core.address import Address
from smtpprobe.models import Failure, FailureKind, MxResult, Stage, Step
from smtpprobe.net.session import Session
from smtpprobe.probe.check import Checker, Conversation, exchange, random_local_part

# RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients per transaction.
DEFAULT_MAX_RCPT = 100
# Postfix slows every reply down once a session has made smtpd_soft_error_limit (10) errors,
# and hangs up at 20; unknown recipients count. Two below that leaves room for a refused MAIL.
DEFAULT_ERROR_BUDGET = 8
DEFAULT_PER_MX = 2
DEFAULT_CONCURRENCY = 20
DNS_CONCURRENCY = 20
# Addresses in flight at once in check_all: enough to fill 20 connections' transactions many
# times over, few enough that a list of a million needs no more memory than one of 5,000.
DEFAULT_WINDOW = 5_000
# Failed sessions in a row before a server's failure stands, and the pause after the second
# one (four times longer after each further one, up to MAX_BACKOFF): a fresh session at once,
# then after 1 s and after 4 s more, so a restarting server has about 5 s to come back.
DEFAULT_SESSION_FAILURES = 4
DEFAULT_BACKOFF = 1.0
BACKOFF_GROWTH = 4.0
MAX_BACKOFF = 8.0
# A silent server (a timeout) weighs this many failures: a lone check waited once, a batch
# waits twice at most.
TIMEOUT_WEIGHT = 2
# With no more addresses than this waiting, little is at stake: two failed sessions in a row
# (the second at once) let a server's failure stand, as it does for a lone check after one.
SMALL_STAKE = 16
SMALL_STAKE_FAILURES = 2
# How likely a transaction may be to push a session past its error budget.
OVERRUN_RISK = 0.001
# Replies that may be about the batch rather than the address (RFC 5321 4.5.3.1.10: 452 and,
# from older servers, 552 mean too many recipients; 421 closes the session).
_ABOUT_TRANSACTION = frozenset({452, 552})
# Doubtful answers before an address is asked alone, first in a fresh session.
_MAX_TRIES = 6


@dataclass(frozen=True, slots=True)
class BatchOptions:
    per_mx: int = DEFAULT_PER_MX  # connections at once per MX address and port
    rate: float | None = None  # new connections plus transactions per second per MX address
    concurrency: int = DEFAULT_CONCURRENCY  # connections at once in all
    max_rcpt: int = DEFAULT_MAX_RCPT  # recipients per transaction
    error_budget: int = DEFAULT_ERROR_BUDGET  # refused commands per session
    window: int = DEFAULT_WINDOW  # addresses in flight at once (check_all)
    session_failures: int = DEFAULT_SESSION_FAILURES  # failed sessions in a row that stand
    backoff: float = DEFAULT_BACKOFF  # seconds after the second failed session in a row

    def __post_init__(self) -> None:
        if self.per_mx < 1 or self.concurrency < 1 or self.max_rcpt < 1:
            raise ValueError("per_mx, concurrency and max_rcpt must be at least 1")
        if self.error_budget < 1:
            raise ValueError("error_budget must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be more than 0")
        if self.window < 1 or self.session_failures < 1:
            raise ValueError("window and session_failures must be at least 1")
        if not self.backoff >= 0:
            raise ValueError("backoff cannot be negative")


def transaction_size(budget_left: int, replies: int, errors: int, max_rcpt: int) -> int:
    """How many recipients the next transaction may carry without risking the error budget.

    Every recipient may be refused, and refusals are what servers count. With nothing seen
    yet, a transaction holds no more recipients than the budget has room for; as replies come
    in, the size grows with the observed refusal rate (a Beta(1, 1) prior), as long as the
    chance of more refusals than the budget allows stays below OVERRUN_RISK.
    """
    if budget_left <= 0:
        return 0
    if replies == 0:
        return min(budget_left, max_rcpt)
    rate = (errors + 1) / (replies + 2)
    size = budget_left
    while size < max_rcpt and _tail(size + 1, rate, budget_left) <= OVERRUN_RISK:
        size += 1
    return min(size, max_rcpt)


def _tail(n: int, p: float, k: int) -> float:
    """P(X > k) for X ~ Binomial(n, p)."""
    if k >= n:
        return 0.0
    below = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
    return max(0.0, 1.0 - below)


def backoff_delay(streak: int, base: float = DEFAULT_BACKOFF) -> float:
    """Seconds to wait before the next session after `streak` failed ones in a row: none after
    the first (one glitch), then `base`, growing by BACKOFF_GROWTH, up to MAX_BACKOFF."""
    if streak <= 1 or base <= 0:
        return 0.0
    return min(base * BACKOFF_GROWTH ** min(streak - 2, 8), MAX_BACKOFF)


class _Pacer:
    """At most `rate` events per second (no bursts): for connections and transactions."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self._next)
        self._next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


@dataclass(slots=True, eq=False)
class _Item:
    """One address's conversation with one MX address, waiting for a transaction."""

    conv: Conversation
    recipients: tuple[str, ...]  # its own address first, then the catch-all probe if asked
    utf8: bool  # it needs SMTPUTF8 (when the server offers it): a MAIL of its own kind
    done: asyncio.Future[None]
    seq: int  # arrival order, across the kinds of MAIL
    tries: int = 0  # doubtful answers so far
    strikes: int = 0  # hang-ups met as the first address of a fresh session
    after: int = -1  # with a strike: ask it again once the endpoint has had more successes
    # The conversation of its strike (the opening and its transaction): a lone check's, and
    # its answer once the server's failures stand.
    struck: tuple[Conversation, list[Step]] | None = None

    @property
    def live(self) -> bool:
        return not self.done.done()


@dataclass(slots=True, eq=False)
class _Endpoint:
    """The queues for one MX address, port and host name (the name matters for TLS)."""

    key: tuple[str, int, str | None]
    # One FIFO per kind of MAIL (False: plain, True: SMTPUTF8); taking is O(1) per address.
    queues: tuple[deque[_Item], deque[_Item]] = field(
        default_factory=lambda: (deque(), deque()))
    # Addresses to ask alone, as the first transaction of a fresh session.
    alone: deque[_Item] = field(default_factory=deque)
    workers: int = 0
    opening: int = 0  # sessions being opened: their first transaction is still to be taken
    talked: bool = False  # a session here got any reply (a 421 greeting counts)
    greeted: bool = False  # a session here got as far as a 220 greeting
    streak: int = 0  # failed sessions in a row (a timeout weighs TIMEOUT_WEIGHT)
    resume_at: float = 0.0  # no new session before this loop time (backoff)
    successes: int = 0  # sessions that answered someone
    failed_opening: Conversation | None = None  # the last failed opening, while streak > 0

    def waiting(self) -> int:
        return len(self.queues[0]) + len(self.queues[1]) + len(self.alone)


@dataclass(slots=True)
class _Opened:
    session: Session
    template: Conversation  # the opening steps (greeting, EHLO, STARTTLS, EHLO) and TLS facts


@dataclass(frozen=True, slots=True)
class _Outcome:
    errors: int = 0
    replies: int = 0
    close: bool = False
    answered: int = 0  # addresses that got an answer that decides
    failed: int = 0  # the session failed before answering anyone: how much that weighs


class Pooled:
    """Conversations through shared sessions, one pool per MX address."""

    def __init__(self, batch: BatchOptions | None = None) -> None:
        self.batch = batch or BatchOptions()
        # Addresses in flight at once in check_all: each waits in a queue; the pool limits.
        self.concurrent_checks: int | None = self.batch.window
        self._domains: dict[str, asyncio.Future[MxResult]] = {}
        self._made_up: dict[str, str] = {}
        self._endpoints: dict[tuple[str, int, str | None], _Endpoint] = {}
        self._per_mx: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._pacers: dict[tuple[str, int], _Pacer] = {}
        self._all: asyncio.Semaphore | None = None
        self._dns: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count()
        self.sessions = 0  # connections opened, for the benchmarks
        self.transactions = 0
        self.failed_sessions = 0  # sessions that failed before answering anyone

    # --- what is shared between addresses ----------------------------------------------------

    def made_up_address(self, checker: Checker, domain: str) -> str:
        # One made-up address per domain: it asks each server the same question once.
        if domain not in self._made_up:
            self._made_up[domain] = f"{random_local_part(checker.rng)}@{domain}"
        return self._made_up[domain]

    async def mail_hosts(self, checker: Checker, address: Address,
                         deadline: float) -> MxResult:
        # Each domain is resolved once, however many of its addresses are checked.
        if checker.options.server is not None:
            key = "server"
        elif address.literal is not None:
            return await checker.lookup(address, deadline)
        else:
            key = address.ascii_domain
        future = self._domains.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._domains[key] = future
            if self._dns is None:
                self._dns = asyncio.Semaphore(DNS_CONCURRENCY)
            try:
                async with self._dns:
                    result = await checker.lookup(address, deadline)
            except BaseException as exc:
                future.set_exception(exc)
                del self._domains[key]
                raise
            future.set_result(result)
            return result
        return await asyncio.shield(future)

    # --- conversations become items in a queue -------------------------------------------------

    async def converse(self, checker: Checker, conv: Conversation, recipients: Sequence[str],
                       *, deadline: float) -> Conversation:
        key = _key(conv)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = _Endpoint(key)
        utf8 = any(not r.isascii() for r in recipients)
        item = _Item(conv, tuple(recipients), utf8, asyncio.get_running_loop().create_future(),
                     next(self._seq))
        if endpoint.greeted:
            conv.greeted.set()  # the server talks; a wait in its queue is no silence
        endpoint.queues[utf8].append(item)
        # Another connection only when the queue holds more than the ones open can carry in
        # their first transactions: a handful of addresses is no reason for a second one.
        if endpoint.workers < self.batch.per_mx and (
                endpoint.waiting() > endpoint.workers * self.batch.error_budget):
            self._start_worker(checker, endpoint, deadline)
        try:
            await asyncio.shield(item.done)
        except asyncio.CancelledError:
            if not item.done.done():
                item.done.cancel()  # decided elsewhere: leave the queue
            raise
        finally:
            conv.greeted.set()
            conv.done.set()
        return conv

    def _start_worker(self, checker: Checker, endpoint: _Endpoint, deadline: float) -> None:
        endpoint.workers += 1
        task = asyncio.create_task(self._work(checker, endpoint, deadline))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the queues ---------------------------------------------------------------------------

    @staticmethod
    def _pending(endpoint: _Endpoint) -> bool:
        """Whether a live item waits (dead ones at the fronts are dropped on the way)."""
        found = False
        for queue in (endpoint.alone, *endpoint.queues):
            while queue and not queue[0].live:
                queue.popleft()
            found = found or bool(queue)
        return found

    def _covered(self, endpoint: _Endpoint) -> bool:
        """Whether the sessions still being opened here will take every waiting address in
        their first transactions, so that another session would open for nothing (a worker
        whose session has ended then leaves them to it, as converse does not start one).
        Addresses to ask alone, and both kinds of MAIL waiting, never count as covered."""
        if not endpoint.opening or endpoint.alone:
            return False
        kinds = [q for q in endpoint.queues if any(item.live for item in q)]
        if len(kinds) != 1:
            return False
        per_session = 1 if self._lone_mode(endpoint) else min(self.batch.error_budget,
                                                               self.batch.max_rcpt)
        room = endpoint.opening * per_session
        recipients: set[str] = set()
        for item in kinds[0]:
            if item.live:
                recipients.update(item.recipients)
                if len(recipients) > room:
                    return False
        return True

    def _lone_mode(self, endpoint: _Endpoint) -> bool:
        """The server keeps failing sessions: its failures stand, one address at a time. The
        more addresses wait, the more evidence that takes (SMALL_STAKE)."""
        needed = self.batch.session_failures
        if endpoint.waiting() <= SMALL_STAKE:
            needed = min(needed, SMALL_STAKE_FAILURES)
        return endpoint.streak >= needed

    @staticmethod
    def _front(endpoint: _Endpoint) -> deque[_Item] | None:
        """The queue whose first live item arrived first (both kinds of MAIL take turns)."""
        best: deque[_Item] | None = None
        for queue in endpoint.queues:
            while queue and not queue[0].live:
                queue.popleft()
            if queue and (best is None or queue[0].seq < best[0].seq):
                best = queue
        return best

    def _take_alone(self, endpoint: _Endpoint) -> _Item | None:
        """An item to ask alone, first in a fresh session, if one may go now: once another
        session has worked since its strike, when the server keeps failing, or when nothing
        else waits (then nothing else could show that the server works)."""
        queue = endpoint.alone
        while queue and not queue[0].live:
            queue.popleft()
        if not queue:
            return None
        item = queue[0]
        if (item.after < endpoint.successes or self._lone_mode(endpoint)
                or self._front(endpoint) is None):
            return queue.popleft()
        return None

    def _take_items(self, endpoint: _Endpoint, size: int, *, first: bool) -> list[_Item]:
        """Items for one transaction: the same kind of MAIL, at most `size` recipients, from
        the front of one queue (O(1) per item taken)."""
        if first:
            alone = self._take_alone(endpoint)
            if alone is not None:
                return [alone]
        queue = self._front(endpoint)
        if queue is None:
            return []
        if first and self._lone_mode(endpoint):
            return [queue.popleft()]
        taken: list[_Item] = []
        recipients: set[str] = set()
        while queue:
            item = queue[0]
            if not item.live:
                queue.popleft()
                continue
            new = [r for r in item.recipients if r not in recipients]
            if taken and len(recipients) + len(new) > size:
                break
            queue.popleft()
            taken.append(item)
            recipients.update(new)
        return taken

    def _requeue(self, endpoint: _Endpoint, items: Sequence[_Item], *, doubtful: bool) -> None:
        """Back to the front of their queue, in their order; `doubtful`: their answers might
        have been about the batch (after _MAX_TRIES of those, they are asked alone)."""
        for item in reversed(items):
            if not item.live:
                continue
            if doubtful:
                item.tries += 1
                if item.tries >= _MAX_TRIES:
                    item.after = -1
                    endpoint.alone.appendleft(item)
                    continue
            endpoint.queues[item.utf8].appendleft(item)

    def _drain(self, endpoint: _Endpoint) -> list[_Item]:
        items = [item for queue in (endpoint.alone, *endpoint.queues) for item in queue
                 if item.live]
        for queue in (endpoint.alone, *endpoint.queues):
            queue.clear()
        return items

    def _fail_waiting(self, endpoint: _Endpoint, template: Conversation | None) -> None:
        """Every waiting item gets the conversation of its strike if it has one, else
        `template` (a failed opening: what a lone check meets the same way), or with None a
        deadline failure."""
        for item in self._drain(endpoint):
            if item.struck is not None:
                self._finish(item, *item.struck)
                continue
            if template is not None:
                self._finish(item, template, [])
                continue
            where = f"{item.conv.address}:{item.conv.port}"
            item.conv.steps.append(Step(
                stage=Stage.CONNECT, command=f"(connect to {where})", elapsed_ms=0.0,
                failure=Failure(FailureKind.DEADLINE,
                                "the overall deadline ran out before this step")))
            item.conv.settle()
            item.done.set_result(None)

    # --- the sessions -------------------------------------------------------------------------

    async def _work(self, checker: Checker, endpoint: _Endpoint, deadline: float) -> None:
        address, port, _ = endpoint.key
        mx_key = (address, port)
        limit = self._per_mx.setdefault(mx_key, asyncio.Semaphore(self.batch.per_mx))
        pacer = self._pacers.setdefault(mx_key, _Pacer(self.batch.rate))
        if self._all is None:
            self._all = asyncio.Semaphore(self.batch.concurrency)
        loop = asyncio.get_running_loop()
        try:
            while self._pending(endpoint):
                now = loop.time()
                if now >= deadline:
                    # What a lone check would meet now: the server's failure, or the deadline.
                    self._fail_waiting(endpoint, endpoint.failed_opening)
                    break
                if endpoint.resume_at > now:
                    await asyncio.sleep(min(endpoint.resume_at, deadline) - now)
                    continue
                async with limit, self._all:
                    if loop.time() < endpoint.resume_at:
                        continue  # another session failed while this one waited
                    if not self._pending(endpoint):
                        break
                    if self._covered(endpoint):
                        break  # the sessions being opened take what waits: none for nothing
                    await pacer.wait()
                    await self._run_session(checker, endpoint, pacer, deadline)
        finally:
            endpoint.workers -= 1
            if self._pending(endpoint) and endpoint.workers == 0:
                # Items arrived while the last worker was leaving: serve them.
                self._start_worker(checker, endpoint, deadline)

    def _peek(self, endpoint: _Endpoint) -> _Item | None:
        for queue in (endpoint.alone, self._front(endpoint)):
            if queue:
                for item in queue:
                    if item.live:
                        return item
        return None

    async def _run_session(self, checker: Checker, endpoint: _Endpoint, pacer: _Pacer,
                           deadline: float) -> None:
        head = self._peek(endpoint)
        if head is None:
            return
        template = Conversation(head.conv.host, head.conv.address, head.conv.port)
        self.sessions += 1
        endpoint.opening += 1
        try:
            session = await checker.open(template, deadline)
        except Exception as exc:  # noqa: BLE001 - a fault of our own, not the server's
            if template.session is not None:
                template.session.close()
            self._fault(endpoint, [], exc)
            return
        finally:
            # No await between here and the first _take_items of a session that opened.
            endpoint.opening -= 1
        if template.steps and template.steps[0].reply is not None:
            endpoint.talked = True
        if template.greeted.is_set() and not endpoint.greeted:
            endpoint.greeted = True
            for queue in (endpoint.alone, *endpoint.queues):
                for item in queue:
                    item.conv.greeted.set()
        if session is None:
            if template.session is not None:
                await template.session.quit()
            self._opening_failed(endpoint, template, deadline)
            return
        opened = _Opened(session, template)
        errors = replies = answered = failed = 0
        first = True
        try:
            while self._pending(endpoint) and session.connected:
                budget_left = self.batch.error_budget - errors
                size = transaction_size(budget_left, replies, errors, self.batch.max_rcpt)
                if size <= 0:
                    break
                if not first:
                    await pacer.wait()
                items = self._take_items(endpoint, size, first=first)
                if not items:
                    break
                self.transactions += 1
                try:
                    outcome = await self._transaction(checker, endpoint, opened, items,
                                                      first=first, deadline=deadline)
                except Exception as exc:  # noqa: BLE001 - a fault of our own
                    self._fault(endpoint, items, exc)
                    break
                errors += outcome.errors
                replies += outcome.replies
                answered += outcome.answered
                failed = max(failed, outcome.failed)
                first = False
                if outcome.close:
                    break
        finally:
            await session.quit()
        if answered:
            endpoint.streak = 0
            endpoint.successes += 1
            endpoint.failed_opening = None
        elif failed:
            self._session_failed(endpoint, failed, opening=False)

    def _fault(self, endpoint: _Endpoint, items: Sequence[_Item], exc: Exception) -> None:
        """A fault of our own (a bug, not anything a server did) in a session: the addresses
        it carried get the exception, as a lone check's conversation does, and the session
        counts as a failed one, so that a fault that repeats reaches the waiting addresses
        after `session_failures` sessions instead of killing the worker or looping."""
        for item in items:
            if item.live:
                item.done.set_exception(exc)
        self._session_failed(endpoint, 1, opening=True)
        if self._lone_mode(endpoint):
            for item in self._drain(endpoint):
                item.done.set_exception(exc)

    def _session_failed(self, endpoint: _Endpoint, weight: int, *, opening: bool) -> None:
        """Count a failed session and pause before the next (backoff_delay). Once the failures
        stand, a server that fails its openings still gets the pause (it fails every waiting
        address at once), one that hangs up on the first address none (each session answers
        one address)."""
        self.failed_sessions += 1
        was_lone = self._lone_mode(endpoint)
        endpoint.streak += weight
        if opening or not was_lone:
            endpoint.resume_at = (asyncio.get_running_loop().time()
                                  + backoff_delay(endpoint.streak, self.batch.backoff))
        if self._lone_mode(endpoint):
            # The failures stand now: each struck item's own one, met as a lone check's.
            keep: deque[_Item] = deque()
            for item in endpoint.alone:
                if item.live and item.struck is not None:
                    self._finish(item, *item.struck)
                elif item.live:
                    keep.append(item)
            endpoint.alone = keep

    def _opening_failed(self, endpoint: _Endpoint, template: Conversation,
                        deadline: float) -> None:
        """No mail transaction could start. Everyone waiting would meet the same opening, so
        it stands for all of them when it is final: the server never answered at all, said
        5yz, the deadline has come, or this is one failed session too many. Otherwise (a hang-
        up, a 421 or another 4yz from a server that talks) they wait for a fresh session."""
        stopped = template.steps[-1] if template.steps else None
        late = asyncio.get_running_loop().time() >= deadline
        passing = (stopped is not None and endpoint.talked and not late
                   and (stopped.hanging_up or (stopped.reply is not None
                                               and stopped.reply.klass == 4))
                   and not (stopped.failure is not None
                            and stopped.failure.kind is FailureKind.DEADLINE))
        if passing:
            assert stopped is not None
            self._session_failed(endpoint, _weight(stopped), opening=True)
            endpoint.failed_opening = template
            if not self._lone_mode(endpoint):
                return
        self._fail_waiting(endpoint, template)

    async def _transaction(self, checker: Checker, endpoint: _Endpoint, opened: _Opened,
                           items: list[_Item], *, first: bool, deadline: float) -> _Outcome:
        session = opened.session
        caps = session.capabilities
        if caps is not None and not caps.has("SMTPUTF8"):
            # RFC 6531 3.2: a non-ASCII address goes only to a server that offers SMTPUTF8;
            # it is not sent, as in a lone check (probe/check.py, converse).
            unsendable = [i for i in items if any(not r.isascii() for r in i.recipients)]
            for item in unsendable:
                needs = next(r for r in item.recipients if not r.isascii())
                self._finish(item, opened.template, [], observed=[(
                    Stage.MAIL, FailureKind.SMTPUTF8_NOT_OFFERED,
                    f"{opened.template.host.name} does not offer SMTPUTF8, which {needs} "
                    f"needs (RFC 6531)")])
            items = [i for i in items if i not in unsendable]
            if not items:
                return _Outcome(answered=len(unsendable))
        order: list[str] = []
        seen: set[str] = set()
        for item in items:
            for recipient in item.recipients:
                if recipient not in seen:
                    seen.add(recipient)
                    order.append(recipient)
        commands = checker.transaction(order, caps, rset=not first)
        steps = await exchange(session, commands, pipelining=checker.pipelines(caps))
        late = asyncio.get_running_loop().time() >= deadline
        if not first:
            rset, steps = steps[0], steps[1:]
            if not rset.replied(250) or not steps:
                # Without a clean RSET the next MAIL would be out of step: start afresh.
                self._requeue(endpoint, items, doubtful=True)
                return _Outcome(errors=1, close=True)
        mail_step, rcpt_steps = steps[0], steps[1:]
        by_recipient = {r: rcpt_steps[i] for i, r in enumerate(order) if i < len(rcpt_steps)}
        errors = sum(1 for s in steps if s.refused)
        replies = sum(1 for s in rcpt_steps if s.reply is not None)
        lone_mode = self._lone_mode(endpoint)
        if not mail_step.replied(250):
            if late:
                self._requeue(endpoint, items, doubtful=False)
                return _Outcome(errors, replies, close=True)
            if not first:
                # A refused MAIL in a later transaction may be about the session (a limit on
                # messages per connection): ask again in a new one, where a lone check would.
                self._requeue(endpoint, items, doubtful=True)
                return _Outcome(errors, replies, close=True)
            if mail_step.hanging_up and not lone_mode:
                # 421 or nothing to the first MAIL: the server's state, for everyone alike.
                self._requeue(endpoint, items, doubtful=False)
                return _Outcome(errors, replies, close=True, failed=_weight(mail_step))
            # The server's answer to our sender, as a lone check meets it.
            for item in items:
                own = [by_recipient[r] for r in item.recipients if r in by_recipient]
                self._finish(item, opened.template, [mail_step, *own])
            return _Outcome(errors, replies, close=not session.connected,
                            answered=0 if mail_step.hanging_up else len(items))
        again: list[_Item] = []
        answered = failed = 0
        for index, item in enumerate(items):
            own = [by_recipient[r] for r in item.recipients if r in by_recipient]
            if first and index == 0 and (not own or own[0].hanging_up) and not late:
                # A hang-up on the first address of a fresh session: a lone check of it would
                # meet this too, if it is about the address and not a glitch of the server.
                if lone_mode or item.strikes >= 1:
                    self._finish(item, opened.template, [mail_step, *own])
                else:
                    item.strikes += 1
                    item.after = endpoint.successes
                    item.struck = (opened.template, [mail_step, *own])
                    endpoint.alone.append(item)
                    failed = _weight(own[0]) if own else 1
                continue
            if self._doubtful(own, len(item.recipients), head=index == 0, first=first):
                again.append(item)
                continue
            self._finish(item, opened.template, [mail_step, *own])
            answered += 1
        if again:
            self._requeue(endpoint, again, doubtful=not (failed or late))
        return _Outcome(errors, replies, close=not session.connected, answered=answered,
                        failed=failed)

    @staticmethod
    def _doubtful(own: list[Step], wanted: int, *, head: bool, first: bool) -> bool:
        """Whether these RCPT answers might be about the batch rather than the address."""
        if len(own) < wanted:
            return not (head and first)
        for step in own:
            if step.hanging_up:
                if not (head and first):
                    return True
            elif step.replied(*_ABOUT_TRANSACTION) and not head:
                return True
        return False

    @staticmethod
    def _finish(item: _Item, template: Conversation, transaction: list[Step], *,
                observed: Sequence[tuple[Stage, FailureKind, str]] = ()) -> None:
        """Give the address the conversation a lone check would have had (`observed`: what
        was found about it without a transaction)."""
        if not item.live:
            return
        conv = item.conv
        conv.steps = list(template.steps) + transaction
        if transaction:
            conv.steps.append(Step(stage=Stage.QUIT, command="QUIT", elapsed_ms=0.0))
        conv.observations = [*template.observations, *observed]
        conv.session = template.session
        conv.settle()
        item.done.set_result(None)


def _weight(step: Step) -> int:
    """How much a failed session weighs: a silent server more than one that hung up."""
    silent = step.failure is not None and step.failure.kind is FailureKind.TIMEOUT
    return TIMEOUT_WEIGHT if silent else 1


def _key(conv: Conversation) -> tuple[str, int, str | None]:
    return (conv.address, conv.port, conv.host.name if conv.host.name != conv.address else None)
