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
wherever it came; a 421, a lost connection or a refused MAIL counts only for the first
transaction of a fresh session, and 452/552 only for the first address of a transaction,
because that is where a lone check would have met them. Anything else is asked again there.
"""

from __future__ import annotations

import asyncio
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
# How likely a transaction may be to push a session past its error budget.
OVERRUN_RISK = 0.001
# Replies that may be about the batch rather than the address (RFC 5321 4.5.3.1.10: 452 and,
# from older servers, 552 mean too many recipients; 421 closes the session).
_ABOUT_TRANSACTION = frozenset({452, 552})
_MAX_TRIES = 6


@dataclass(frozen=True, slots=True)
class BatchOptions:
    per_mx: int = DEFAULT_PER_MX  # connections at once per MX address and port
    rate: float | None = None  # new connections plus transactions per second per MX address
    concurrency: int = DEFAULT_CONCURRENCY  # connections at once in all
    max_rcpt: int = DEFAULT_MAX_RCPT  # recipients per transaction
    error_budget: int = DEFAULT_ERROR_BUDGET  # refused commands per session

    def __post_init__(self) -> None:
        if self.per_mx < 1 or self.concurrency < 1 or self.max_rcpt < 1:
            raise ValueError("per_mx, concurrency and max_rcpt must be at least 1")
        if self.error_budget < 1:
            raise ValueError("error_budget must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be more than 0")


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
    tries: int = 0

    @property
    def live(self) -> bool:
        return not self.done.done()


@dataclass(slots=True, eq=False)
class _Endpoint:
    """The queue for one MX address, port and host name (the name matters for TLS)."""

    key: tuple[str, int, str | None]
    queue: deque[_Item] = field(default_factory=deque)
    workers: int = 0
    greeted: bool = False  # a session here got as far as the greeting


@dataclass(slots=True)
class _Opened:
    session: Session
    template: Conversation  # the opening steps (greeting, EHLO, STARTTLS, EHLO) and TLS facts


class Pooled:
    """Conversations through shared sessions, one pool per MX address."""

    concurrent_checks: int | None = None  # every address waits in a queue; the pool limits

    def __init__(self, batch: BatchOptions | None = None) -> None:
        self.batch = batch or BatchOptions()
        self._domains: dict[str, asyncio.Future[MxResult]] = {}
        self._made_up: dict[str, str] = {}
        self._endpoints: dict[tuple[str, int, str | None], _Endpoint] = {}
        self._per_mx: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._pacers: dict[tuple[str, int], _Pacer] = {}
        self._all: asyncio.Semaphore | None = None
        self._dns: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sessions = 0  # connections opened, for the benchmarks
        self.transactions = 0

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
        item = _Item(conv, tuple(recipients), any(not r.isascii() for r in recipients),
                     asyncio.get_running_loop().create_future())
        if endpoint.greeted:
            conv.greeted.set()  # the server talks; a wait in its queue is no silence
        endpoint.queue.append(item)
        # Another connection only when the queue holds more than the ones open can carry in
        # their first transactions: a handful of addresses is no reason for a second one.
        if endpoint.workers < self.batch.per_mx and (
                len(endpoint.queue) > endpoint.workers * self.batch.error_budget):
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

    # --- the sessions -------------------------------------------------------------------------

    async def _work(self, checker: Checker, endpoint: _Endpoint, deadline: float) -> None:
        address, port, _ = endpoint.key
        mx_key = (address, port)
        limit = self._per_mx.setdefault(mx_key, asyncio.Semaphore(self.batch.per_mx))
        pacer = self._pacers.setdefault(mx_key, _Pacer(self.batch.rate))
        if self._all is None:
            self._all = asyncio.Semaphore(self.batch.concurrency)
        try:
            async with limit, self._all:
                while self._pending(endpoint):
                    if asyncio.get_running_loop().time() >= deadline:
                        self._fail_all(endpoint)
                        break
                    await pacer.wait()
                    await self._run_session(checker, endpoint, pacer, deadline)
        finally:
            endpoint.workers -= 1
            if self._pending(endpoint) and endpoint.workers == 0:
                # Items arrived while the last worker was leaving: serve them.
                self._start_worker(checker, endpoint, deadline)

    @staticmethod
    def _pending(endpoint: _Endpoint) -> bool:
        while endpoint.queue and not endpoint.queue[0].live:
            endpoint.queue.popleft()
        return bool(endpoint.queue)

    @staticmethod
    def _fail_all(endpoint: _Endpoint) -> None:
        # The deadline passed while these waited: each gets what a lone check would get now.
        while endpoint.queue:
            item = endpoint.queue.popleft()
            if item.live:
                where = f"{item.conv.address}:{item.conv.port}"
                item.conv.steps.append(Step(
                    stage=Stage.CONNECT, command=f"(connect to {where})", elapsed_ms=0.0,
                    failure=Failure(FailureKind.DEADLINE,
                                    "the overall deadline ran out before this step")))
                item.conv.settle()
                item.done.set_result(None)

    async def _run_session(self, checker: Checker, endpoint: _Endpoint, pacer: _Pacer,
                           deadline: float) -> None:
        head = endpoint.queue[0]
        template = Conversation(head.conv.host, head.conv.address, head.conv.port)
        self.sessions += 1
        session = await checker.open(template, deadline)
        if template.greeted.is_set():
            endpoint.greeted = True
            for item in endpoint.queue:
                item.conv.greeted.set()
        if session is None:
            # Whatever stopped this session would stop a lone check the same way.
            for item in self._take_all_items(endpoint):
                self._finish(item, template, [])
            if template.session is not None:
                await template.session.quit()
            return
        opened = _Opened(session, template)
        errors = replies = 0
        first = True
        try:
            while self._pending(endpoint) and session.connected:
                budget_left = self.batch.error_budget - errors
                size = transaction_size(budget_left, replies, errors, self.batch.max_rcpt)
                if size <= 0:
                    break
                if not first:
                    await pacer.wait()
                items = self._take_items(endpoint, size)
                if not items:
                    break
                self.transactions += 1
                outcome = await self._transaction(checker, opened, items, first=first)
                errors += outcome.errors
                replies += outcome.replies
                first = False
                if outcome.close:
                    break
        finally:
            await session.quit()

    @staticmethod
    def _take_all_items(endpoint: _Endpoint) -> list[_Item]:
        items = [item for item in endpoint.queue if item.live]
        endpoint.queue.clear()
        return items

    @staticmethod
    def _take_items(endpoint: _Endpoint, size: int) -> list[_Item]:
        """Items for one transaction: the same kind of MAIL, at most `size` recipients."""
        taken: list[_Item] = []
        recipients: set[str] = set()
        utf8: bool | None = None
        rest: deque[_Item] = deque()
        while endpoint.queue:
            item = endpoint.queue.popleft()
            if not item.live:
                continue
            new = [r for r in item.recipients if r not in recipients]
            if utf8 is None:
                utf8 = item.utf8
            if item.utf8 != utf8 or (taken and len(recipients) + len(new) > size):
                rest.append(item)
                continue
            taken.append(item)
            recipients.update(new)
        endpoint.queue.extendleft(reversed(rest))
        return taken

    async def _transaction(self, checker: Checker, opened: _Opened, items: list[_Item], *,
                           first: bool) -> _Outcome:
        session = opened.session
        caps = session.capabilities
        order: list[str] = []
        for item in items:
            order.extend(r for r in item.recipients if r not in order)
        commands = checker.transaction(order, caps, rset=not first)
        steps = await exchange(session, commands, pipelining=checker.pipelines(caps))
        if not first:
            rset, steps = steps[0], steps[1:]
            if not rset.replied(250):
                # Without a clean RSET the next MAIL would be out of step: start afresh.
                self._requeue(opened, items)
                return _Outcome(errors=1, replies=0, close=True)
        mail_step, rcpt_steps = steps[0], steps[1:]
        by_recipient = {r: rcpt_steps[i] for i, r in enumerate(order) if i < len(rcpt_steps)}
        errors = sum(1 for s in steps if s.refused)
        replies = sum(1 for s in rcpt_steps if s.reply is not None)
        mail_ok = mail_step.replied(250)
        if not mail_ok and not first:
            # A refused MAIL in a later transaction may be about the session (a limit on
            # messages per connection): ask again in a new one, where a lone check would.
            self._requeue(opened, items)
            return _Outcome(errors, replies, close=True)
        again: list[_Item] = []
        for index, item in enumerate(items):
            own = [by_recipient[r] for r in item.recipients if r in by_recipient]
            if mail_ok and self._doubtful(own, len(item.recipients), head=index == 0,
                                          first=first) and item.tries < _MAX_TRIES:
                again.append(item)
                continue
            self._finish(item, opened.template, [mail_step, *own])
        close = not session.connected
        if again:
            self._requeue(opened, again)
        return _Outcome(errors, replies, close=close)

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

    def _requeue(self, opened: _Opened, items: list[_Item]) -> None:
        endpoint = self._endpoints[_key(opened.template)]
        for item in reversed(items):
            if item.live:
                item.tries += 1
                endpoint.queue.appendleft(item)

    @staticmethod
    def _finish(item: _Item, template: Conversation, transaction: list[Step]) -> None:
        """Give the address the conversation a lone check would have had."""
        if not item.live:
            return
        conv = item.conv
        conv.steps = list(template.steps) + transaction
        if transaction:
            conv.steps.append(Step(stage=Stage.QUIT, command="QUIT", elapsed_ms=0.0))
        conv.observations = list(template.observations)
        conv.session = template.session
        conv.settle()
        item.done.set_result(None)


@dataclass(frozen=True, slots=True)
class _Outcome:
    errors: int
    replies: int
    close: bool


def _key(conv: Conversation) -> tuple[str, int, str | None]:
    return (conv.address, conv.port, conv.host.name if conv.host.name != conv.address else None)
