"""A reference model of shared RULES.md, written from the text alone.

It is deliberately independent of processors/rules/: an outside tester's
reading of the contract, used by test_e2e.py to predict the read models
(DESIGN.md "Read models", docs/read-models.md) that the real engine builds
from the same commands.  Integers only: money in cents, time in ms, rates
in bps.

The model applies commands one at a time, in the order a single partition
would see them, and applies the engine's internal commands (OpenOrder,
ReleaseStock) synchronously.  The driver sends its commands phase by phase
so that the real engine's result cannot depend on how partitions
interleave (only per-key order is guaranteed); inside a phase the model's
synchronous shortcut then gives the same outcome.

Run `python3 model.py` for the self-checks at the end of this file.
"""

# Defaults (RULES.md "Commands", CreateActivity).
DEFAULT_PAY_TIMEOUT_MS = 900000
DEFAULT_AUTO_RECEIVE_MS = 864000000
DEFAULT_FREEZE_MS = 604800000
DEFAULT_COMMISSION_BPS = (1000, 500)
MAX_REFUNDS = 50

PENDING = "PENDING_PAYMENT"
PAID = "PAID"
RECEIVED = "RECEIVED"
SETTLED = "SETTLED"
CANCELLED = "CANCELLED"
REFUNDED = "REFUNDED"


class Activity:
    def __init__(self, c):
        self.activity_id = c["activity_id"]
        self.sku = c["sku"]
        self.price_cents = c["price_cents"]
        self.stock = c["stock"]
        self.per_user_limit = c["per_user_limit"]
        self.start_ms = c["start_ms"]
        self.end_ms = c["end_ms"]
        self.pay_timeout_ms = c.get("pay_timeout_ms", DEFAULT_PAY_TIMEOUT_MS)
        self.auto_receive_ms = c.get("auto_receive_ms",
                                     DEFAULT_AUTO_RECEIVE_MS)
        self.freeze_ms = c.get("freeze_ms", DEFAULT_FREEZE_MS)
        self.commission_bps = tuple(c.get("commission_bps",
                                          DEFAULT_COMMISSION_BPS))
        self.reserved = 0
        self.released = 0
        self.seen_orders = set()   # order ids seen here, accepted or not
        self.user_active = {}      # user_id -> reserved and not released

    @property
    def remaining(self):
        # RULES.md: remaining = stock - reserved + released
        return self.stock - self.reserved + self.released


class Order:
    def __init__(self, oid, act, user_id, qty, ts):
        self.order_id = oid
        self.activity_id = act.activity_id
        self.user_id = user_id
        self.qty = qty
        self.amount_cents = qty * act.price_cents
        self.placed_ms = ts
        self.pay_deadline_ms = ts + act.pay_timeout_ms
        self.auto_receive_ms = act.auto_receive_ms
        self.freeze_ms = act.freeze_ms
        self.commission_bps = act.commission_bps
        self.status = PENDING
        self.reason = ""
        self.payment_id = ""
        self.refunded_cents = 0
        self.refund_ids = set()
        self.paid_ms = None
        self.received_ms = None
        self.settled_ms = None
        self.cancelled_ms = None
        # (command type, reason) of the last refused command on this order
        self.last_rejection = None


class Entry:
    """One commission entry, keyed "<order_id>:<level>"."""

    def __init__(self, order, level, beneficiary, rate):
        self.order_id = order.order_id
        self.buyer_id = order.user_id
        self.beneficiary_id = beneficiary
        self.level = level
        self.rate_bps = rate
        self.accrued_cents = order.amount_cents * rate // 10000
        self.reversed_cents = 0
        self.settled_cents = 0
        self.status = "PENDING"

    @property
    def pending_cents(self):
        return self.accrued_cents - self.reversed_cents - self.settled_cents


class Model:
    def __init__(self):
        self.activities = {}
        self.orders = {}
        # order_id -> (reason, user_id) of the rejected PlaceOrder
        # attempt Redis shows (the greatest, _reject_attempt) unless a
        # placed order has that id
        self.rejected_attempts = {}
        self.parent = {}           # user_id -> (parent_id, bound_ms)
        self.entries = {}          # "<order_id>:<level>" -> Entry
        self.rejections = []       # (command type, aggregate id, reason)
        self.ignored = []          # (command type, aggregate id)

    # ---------------------------------------------------------------- util
    def _reject(self, ctype, agg, reason, order=None):
        self.rejections.append((ctype, agg, reason))
        if order is not None:
            order.last_rejection = (ctype, reason)
        return reason

    def _ignore(self, ctype, agg):
        self.ignored.append((ctype, agg))
        return "IGNORED"

    def apply(self, cmd):
        """Apply one command (a dict as sent to `ordo produce`).

        Returns a short outcome string: "OK", "IGNORED" or the reason code
        of the rejection, so scenario generators can steer themselves."""
        fn = getattr(self, "_" + cmd["type"])
        return fn(cmd, cmd["ts_ms"])

    # ------------------------------------------------------------ activity
    def _CreateActivity(self, c, ts):
        aid = c["activity_id"]
        bps = list(c.get("commission_bps", DEFAULT_COMMISSION_BPS))
        ok = (c["stock"] >= 1 and c["price_cents"] >= 1
              and c["per_user_limit"] >= 1 and c["start_ms"] < c["end_ms"]
              and c.get("pay_timeout_ms", DEFAULT_PAY_TIMEOUT_MS) >= 1
              and c.get("auto_receive_ms", DEFAULT_AUTO_RECEIVE_MS) >= 1
              and c.get("freeze_ms", DEFAULT_FREEZE_MS) >= 0
              and len(bps) <= 3
              and all(0 <= b <= 10000 for b in bps)
              and sum(bps) <= 5000)
        if not ok:
            return self._reject("CreateActivity", aid, "INVALID_ACTIVITY")
        if aid in self.activities:
            return self._reject("CreateActivity", aid, "DUPLICATE_ACTIVITY")
        self.activities[aid] = Activity(c)
        return "OK"

    def _reject_attempt(self, oid, aid, uid, reason):
        # rejected in several activities: the greatest by not
        # UNKNOWN_ACTIVITY, then user_id, then reason (docs/read-models.md)
        def rank(reason, uid):
            return (reason != "UNKNOWN_ACTIVITY", uid, reason)
        prev = self.rejected_attempts.get(oid)
        if prev is None or rank(reason, uid) >= rank(*prev):
            self.rejected_attempts[oid] = (reason, uid)
        return self._reject("PlaceOrder", aid, reason)

    def _PlaceOrder(self, c, ts):
        oid, aid, uid, qty = (c["order_id"], c["activity_id"], c["user_id"],
                              c["qty"])
        act = self.activities.get(aid)
        if act is None:
            return self._reject_attempt(oid, aid, uid, "UNKNOWN_ACTIVITY")
        if oid in act.seen_orders:
            return self._ignore("PlaceOrder", aid)
        act.seen_orders.add(oid)
        if qty < 1:
            return self._reject_attempt(oid, aid, uid, "INVALID_QTY")
        if ts < act.start_ms:
            return self._reject_attempt(oid, aid, uid, "NOT_STARTED")
        if ts >= act.end_ms:
            return self._reject_attempt(oid, aid, uid, "ENDED")
        if act.user_active.get(uid, 0) + qty > act.per_user_limit:
            return self._reject_attempt(oid, aid, uid, "LIMIT_EXCEEDED")
        if act.remaining == 0:
            return self._reject_attempt(oid, aid, uid, "SOLD_OUT")
        if act.remaining < qty:
            return self._reject_attempt(oid, aid, uid, "INSUFFICIENT_STOCK")
        act.reserved += qty
        act.user_active[uid] = act.user_active.get(uid, 0) + qty
        # OpenOrder, keyed by order_id, to the order processor.
        return self._open_order(oid, act, uid, qty, ts)

    def _release(self, aid, uid, qty):
        # ReleaseStock back to the activity.
        act = self.activities[aid]
        act.released += qty
        act.user_active[uid] -= qty

    # --------------------------------------------------------------- order
    def _open_order(self, oid, act, uid, qty, ts):
        if oid in self.orders:
            # RULES.md: the existing order is untouched; the new
            # reservation is released.
            self._reject("OpenOrder", oid, "DUPLICATE_ORDER_ID",
                         self.orders[oid])
            self._release(act.activity_id, uid, qty)
            return "DUPLICATE_ORDER_ID"
        self.orders[oid] = Order(oid, act, uid, qty, ts)
        return "OK"

    def _fire_due(self, o, ts):
        """Fire the order's timers that are due at ts, each at its own
        deadline (RULES.md "Timers")."""
        while True:
            if o.status == PENDING and ts > o.pay_deadline_ms:
                o.status = CANCELLED
                o.reason = "TIMEOUT"
                o.cancelled_ms = o.pay_deadline_ms
                self._release(o.activity_id, o.user_id, o.qty)
            elif (o.status == PAID
                  and ts >= o.paid_ms + o.auto_receive_ms):
                o.status = RECEIVED
                o.received_ms = o.paid_ms + o.auto_receive_ms
            elif (o.status == RECEIVED
                  and ts >= o.received_ms + o.freeze_ms):
                o.status = SETTLED
                o.settled_ms = o.received_ms + o.freeze_ms
                self._on_settled(o)
            else:
                return

    def _Tick(self, c, ts):
        due = []
        for o in self.orders.values():
            due.append(o)
        # Deadline order across orders does not change any per-order
        # result, and releases of stock commute.
        for o in due:
            self._fire_due(o, ts)
        return "OK"

    def _ConfirmPayment(self, c, ts):
        oid = c["order_id"]
        o = self.orders.get(oid)
        if o is None:
            return self._reject("ConfirmPayment", oid, "UNKNOWN_ORDER")
        self._fire_due(o, ts)
        if o.status in (PAID, RECEIVED, SETTLED, REFUNDED):
            if c["payment_id"] == o.payment_id:
                return self._ignore("ConfirmPayment", oid)
            return self._reject("ConfirmPayment", oid, "DUPLICATE_PAYMENT",
                                o)
        if o.status == CANCELLED:
            return self._reject("ConfirmPayment", oid, "ORDER_CANCELLED", o)
        if c["amount_cents"] != o.amount_cents:
            return self._reject("ConfirmPayment", oid, "AMOUNT_MISMATCH", o)
        o.status = PAID
        o.paid_ms = ts
        o.payment_id = c["payment_id"]
        self._on_paid(o)
        self._fire_due(o, ts)
        return "OK"

    def _CancelOrder(self, c, ts):
        oid = c["order_id"]
        o = self.orders.get(oid)
        if o is None:
            return self._reject("CancelOrder", oid, "UNKNOWN_ORDER")
        self._fire_due(o, ts)
        if c["user_id"] != o.user_id:
            return self._reject("CancelOrder", oid, "NOT_OWNER", o)
        if o.status == CANCELLED:
            return self._ignore("CancelOrder", oid)
        if o.status != PENDING:
            return self._reject("CancelOrder", oid, "NOT_PENDING", o)
        o.status = CANCELLED
        o.reason = "USER"
        o.cancelled_ms = ts
        self._release(o.activity_id, o.user_id, o.qty)
        self._fire_due(o, ts)
        return "OK"

    def _ConfirmReceipt(self, c, ts):
        oid = c["order_id"]
        o = self.orders.get(oid)
        if o is None:
            return self._reject("ConfirmReceipt", oid, "UNKNOWN_ORDER")
        self._fire_due(o, ts)
        if o.status in (RECEIVED, SETTLED):
            return self._ignore("ConfirmReceipt", oid)
        if o.status != PAID:
            return self._reject("ConfirmReceipt", oid, "INVALID_STATE", o)
        o.status = RECEIVED
        o.received_ms = ts
        self._fire_due(o, ts)
        return "OK"

    def _RefundOrder(self, c, ts):
        oid = c["order_id"]
        o = self.orders.get(oid)
        if o is None:
            return self._reject("RefundOrder", oid, "UNKNOWN_ORDER")
        self._fire_due(o, ts)
        if c["refund_id"] in o.refund_ids:
            return self._ignore("RefundOrder", oid)
        if o.status == SETTLED:
            return self._reject("RefundOrder", oid, "WINDOW_CLOSED", o)
        if o.status not in (PAID, RECEIVED):
            return self._reject("RefundOrder", oid, "INVALID_STATE", o)
        amt = c["amount_cents"]
        if amt < 1:
            return self._reject("RefundOrder", oid, "INVALID_AMOUNT", o)
        if o.refunded_cents + amt > o.amount_cents:
            return self._reject("RefundOrder", oid, "EXCEEDS_PAID", o)
        if len(o.refund_ids) >= MAX_REFUNDS:
            return self._reject("RefundOrder", oid, "TOO_MANY_REFUNDS", o)
        o.refund_ids.add(c["refund_id"])
        o.refunded_cents += amt
        if o.refunded_cents == o.amount_cents:
            o.status = REFUNDED
        self._on_refund(o)
        self._fire_due(o, ts)
        return "OK"

    # ------------------------------------------------------------ referral
    def _ancestors(self, uid):
        seen = []
        while uid in self.parent:
            uid = self.parent[uid][0]
            seen.append(uid)
        return seen

    def _BindReferrer(self, c, ts):
        uid, ref = c["user_id"], c["referrer_id"]
        if uid == ref:
            return self._reject("BindReferrer", uid, "SELF")
        if uid in self.parent:
            if self.parent[uid][0] == ref:
                return self._ignore("BindReferrer", uid)
            return self._reject("BindReferrer", uid, "ALREADY_BOUND")
        if uid in self._ancestors(ref):
            return self._reject("BindReferrer", uid, "CYCLE")
        self.parent[uid] = (ref, ts)
        return "OK"

    # ---------------------------------------------------------- commission
    def _on_paid(self, o):
        uid = o.user_id
        for i, rate in enumerate(o.commission_bps):
            link = self.parent.get(uid)
            if link is None or link[1] > o.paid_ms:
                return
            uid = link[0]
            e = Entry(o, i + 1, uid, rate)
            if e.accrued_cents == 0:
                continue
            self.entries["%s:%d" % (o.order_id, i + 1)] = e

    def order_entries(self, o):
        return [e for k, e in self.entries.items() if e.order_id ==
                o.order_id]

    def _on_refund(self, o):
        r, p = o.refunded_cents, o.amount_cents
        for e in self.order_entries(o):
            e.reversed_cents = e.accrued_cents * r // p
            if r == p:
                e.status = "REVERSED"

    def _on_settled(self, o):
        for e in self.order_entries(o):
            e.settled_cents = e.accrued_cents - e.reversed_cents
            e.status = "SETTLED" if e.settled_cents > 0 else "REVERSED"

    # ---------------------------------------------------- read-model views
    def earnings(self):
        out = {}
        for e in self.entries.values():
            d = out.setdefault(e.beneficiary_id, {
                "pending_cents": 0, "settled_cents": 0,
                "reversed_cents": 0})
            d["pending_cents"] += e.pending_cents
            d["settled_cents"] += e.settled_cents
            d["reversed_cents"] += e.reversed_cents
        return out

    def mongo_activities(self):
        return {a.activity_id: {
            "sku": a.sku, "price_cents": a.price_cents, "stock": a.stock,
            "remaining": a.remaining, "start_ms": a.start_ms,
            "end_ms": a.end_ms} for a in self.activities.values()}

    def mongo_orders(self):
        return {o.order_id: {
            "activity_id": o.activity_id, "user_id": o.user_id,
            "qty": o.qty, "amount_cents": o.amount_cents,
            "status": o.status, "reason": o.reason or None,
            "payment_id": o.payment_id or None,
            "refunded_cents": o.refunded_cents, "placed_ms": o.placed_ms,
            "pay_deadline_ms": o.pay_deadline_ms, "paid_ms": o.paid_ms,
            "received_ms": o.received_ms, "settled_ms": o.settled_ms}
            for o in self.orders.values()}

    def mongo_commissions(self):
        return {k: {
            "order_id": e.order_id, "buyer_id": e.buyer_id,
            "beneficiary_id": e.beneficiary_id, "level": e.level,
            "rate_bps": e.rate_bps, "accrued_cents": e.accrued_cents,
            "reversed_cents": e.reversed_cents,
            "settled_cents": e.settled_cents, "status": e.status}
            for k, e in self.entries.items()}

    def mongo_referrals(self):
        return {u: {"parent_id": p, "bound_ms": b}
                for u, (p, b) in self.parent.items()}

    def redis_orders(self):
        """order_id -> expected hash fields (only the ones we compare)."""
        out = {}
        for oid, (reason, uid) in self.rejected_attempts.items():
            out[oid] = {"status": "REJECTED", "reason": reason,
                        "user_id": uid}
        for o in self.orders.values():   # a placed order wins
            out[o.order_id] = {
                # unset until CANCELLED: absent, never "" (None)
                "status": o.status, "reason": o.reason or None,
                "user_id": o.user_id, "activity_id": o.activity_id,
                "qty": str(o.qty), "amount_cents": str(o.amount_cents),
                "refunded_cents": str(o.refunded_cents),
                "placed_ms": str(o.placed_ms),
                "pay_deadline_ms": str(o.pay_deadline_ms)}
        return out

    def leaderboard(self):
        return {u: d["settled_cents"] for u, d in self.earnings().items()}


# ------------------------------------------------------------ self-checks
def _selfcheck():
    T = 1000000
    n = [0]

    def act(m, aid, **kw):
        c = {"type": "CreateActivity", "activity_id": aid, "sku": "s",
             "price_cents": 100, "stock": 5, "per_user_limit": 2,
             "start_ms": T, "end_ms": T + 1000, "ts_ms": T}
        c.update(kw)
        return m.apply(c)

    def place(m, oid, aid, uid, qty, ts):
        return m.apply({"type": "PlaceOrder", "order_id": oid,
                        "activity_id": aid, "user_id": uid, "qty": qty,
                        "ts_ms": ts})

    def cmd(m, t, ts, **kw):
        n[0] += 1
        kw.update(type=t, ts_ms=ts)
        return m.apply(kw)

    m = Model()
    assert act(m, "A", stock=0) == "INVALID_ACTIVITY"
    assert act(m, "A", commission_bps=[1000, 1000, 1000, 1000]) == \
        "INVALID_ACTIVITY"
    assert act(m, "A", commission_bps=[3000, 2001]) == "INVALID_ACTIVITY"
    assert act(m, "A", start_ms=T + 1000) == "INVALID_ACTIVITY"
    assert act(m, "A", freeze_ms=0, pay_timeout_ms=100,
               auto_receive_ms=50, commission_bps=[333, 77]) == "OK"
    assert act(m, "A") == "DUPLICATE_ACTIVITY"
    assert m.activities["A"].freeze_ms == 0
    # PlaceOrder check order
    assert place(m, "o1", "X", "u1", 1, T) == "UNKNOWN_ACTIVITY"
    assert place(m, "o1", "A", "u1", 0, T) == "INVALID_QTY"
    assert place(m, "o1", "A", "u1", 1, T) == "IGNORED"
    assert place(m, "o2", "A", "u1", 1, T - 1) == "NOT_STARTED"
    assert place(m, "o3", "A", "u1", 1, T + 1000) == "ENDED"
    assert place(m, "o4", "A", "u1", 3, T + 1) == "LIMIT_EXCEEDED"
    assert place(m, "o5", "A", "u1", 2, T + 1) == "OK"
    assert place(m, "o6", "A", "u1", 1, T + 1) == "LIMIT_EXCEEDED"
    assert place(m, "o7", "A", "u2", 2, T + 1) == "OK"
    assert place(m, "o8", "A", "u3", 2, T + 1) == "INSUFFICIENT_STOCK"
    assert place(m, "o9", "A", "u3", 1, T + 1) == "OK"
    assert place(m, "o10", "A", "u4", 1, T + 1) == "SOLD_OUT"
    assert m.activities["A"].remaining == 0
    # pay timeout: strictly after the deadline
    o5 = m.orders["o5"]
    assert o5.pay_deadline_ms == T + 101 and o5.amount_cents == 200
    assert cmd(m, "Tick", T + 101) == "OK" and o5.status == PENDING
    assert cmd(m, "ConfirmPayment", T + 101, order_id="o5",
               payment_id="p", amount_cents=199) == "AMOUNT_MISMATCH"
    assert cmd(m, "ConfirmPayment", T + 101, order_id="o5",
               payment_id="p", amount_cents=200) == "OK"
    assert cmd(m, "ConfirmPayment", T + 102, order_id="o5",
               payment_id="p", amount_cents=1) == "IGNORED"
    assert cmd(m, "ConfirmPayment", T + 102, order_id="o5",
               payment_id="q", amount_cents=200) == "DUPLICATE_PAYMENT"
    assert cmd(m, "CancelOrder", T + 102, order_id="o7",
               user_id="u1") == "NOT_OWNER"
    assert cmd(m, "ConfirmPayment", T + 102, order_id="o7",
               payment_id="p7", amount_cents=200) == "ORDER_CANCELLED"
    o7 = m.orders["o7"]
    assert o7.status == CANCELLED and o7.reason == "TIMEOUT"
    assert m.activities["A"].remaining == 2
    assert m.activities["A"].user_active["u2"] == 0
    assert cmd(m, "CancelOrder", T + 103, order_id="o7",
               user_id="u2") == "IGNORED"
    assert cmd(m, "CancelOrder", T + 103, order_id="o5",
               user_id="u1") == "NOT_PENDING"
    # auto receipt at paid + 50 with freeze 0 settles at the same ms
    assert cmd(m, "Tick", T + 150) == "OK" and o5.status == PAID
    assert cmd(m, "RefundOrder", T + 150, order_id="o5", refund_id="r1",
               amount_cents=0) == "INVALID_AMOUNT"
    assert cmd(m, "RefundOrder", T + 150, order_id="o5", refund_id="r1",
               amount_cents=201) == "EXCEEDS_PAID"
    assert cmd(m, "RefundOrder", T + 150, order_id="o5", refund_id="r1",
               amount_cents=50) == "OK"
    assert cmd(m, "RefundOrder", T + 150, order_id="o5", refund_id="r1",
               amount_cents=50) == "IGNORED"
    assert o5.refunded_cents == 50
    assert cmd(m, "RefundOrder", T + 151, order_id="o5", refund_id="r2",
               amount_cents=1) == "WINDOW_CLOSED"
    assert o5.status == SETTLED and o5.received_ms == T + 151
    assert o5.settled_ms == T + 151
    assert cmd(m, "RefundOrder", T + 152, order_id="o5", refund_id="r1",
               amount_cents=1) == "IGNORED"
    # unknown order
    for t in ("ConfirmPayment", "CancelOrder", "ConfirmReceipt",
              "RefundOrder"):
        assert cmd(m, t, T, order_id="zz", payment_id="p", user_id="u",
                   refund_id="r", amount_cents=1) == "UNKNOWN_ORDER"
    # duplicate order id across activities
    assert act(m, "B", stock=10, per_user_limit=10) == "OK"
    assert place(m, "o9", "B", "u9", 3, T + 200) == "DUPLICATE_ORDER_ID"
    assert m.activities["B"].remaining == 10
    assert m.orders["o9"].activity_id == "A"
    assert m.redis_orders()["o9"]["status"] == CANCELLED   # timed out

    # referrals
    m = Model()
    b = lambda u, r, ts=1: m.apply({"type": "BindReferrer", "user_id": u,
                                    "referrer_id": r, "ts_ms": ts})
    assert b("a", "a") == "SELF"
    assert b("a", "b") == "OK"
    assert b("a", "b") == "IGNORED"
    assert b("a", "c") == "ALREADY_BOUND"
    assert b("b", "c") == "OK"
    assert b("c", "a") == "CYCLE"
    assert b("c", "b") == "CYCLE"
    assert b("c", "d", 500) == "OK"
    assert b("d", "e", 10) == "OK"
    # commissions: level 3 (c -> d) bound after paid_ms is not used
    act(m, "C", price_cents=997, stock=100, per_user_limit=100,
        commission_bps=[333, 77, 1500], pay_timeout_ms=10 ** 6,
        auto_receive_ms=100, freeze_ms=100, start_ms=0)
    assert place(m, "x", "C", "a", 3, 100) == "OK"
    assert cmd(m, "ConfirmPayment", 499, order_id="x", payment_id="p",
               amount_cents=2991) == "OK"
    es = sorted(m.entries)
    assert es == ["x:1", "x:2"], es
    assert m.entries["x:1"].accrued_cents == 2991 * 333 // 10000 == 99
    assert m.entries["x:2"].accrued_cents == 2991 * 77 // 10000 == 23
    assert m.entries["x:1"].beneficiary_id == "b"
    assert m.entries["x:2"].beneficiary_id == "c"
    assert cmd(m, "RefundOrder", 500, order_id="x", refund_id="r1",
               amount_cents=1000) == "OK"
    assert m.entries["x:1"].reversed_cents == 99 * 1000 // 2991 == 33
    assert m.entries["x:2"].reversed_cents == 23 * 1000 // 2991 == 7
    assert cmd(m, "RefundOrder", 501, order_id="x", refund_id="r2",
               amount_cents=1990) == "OK"
    assert m.entries["x:1"].reversed_cents == 99 * 2990 // 2991 == 98
    assert cmd(m, "ConfirmReceipt", 502, order_id="x") == "OK"
    assert cmd(m, "Tick", 602) == "OK"
    assert m.orders["x"].status == SETTLED
    assert m.entries["x:1"].settled_cents == 1
    assert m.entries["x:1"].status == "SETTLED"
    assert m.entries["x:2"].settled_cents == 23 - 23 * 2990 // 2991 == 1
    e = m.earnings()
    assert e["b"] == {"pending_cents": 0, "settled_cents": 1,
                      "reversed_cents": 98}
    # full refund reverses exactly
    assert place(m, "y", "C", "a", 1, 700) == "OK"
    assert cmd(m, "ConfirmPayment", 701, order_id="y", payment_id="p",
               amount_cents=997) == "OK"
    assert sorted(k for k in m.entries if k.startswith("y:")) == \
        ["y:1", "y:2", "y:3"]
    assert m.entries["y:3"].beneficiary_id == "d"
    for i in range(3):
        assert cmd(m, "RefundOrder", 702 + i, order_id="y",
                   refund_id="r%d" % i, amount_cents=332) == "OK"
    assert cmd(m, "RefundOrder", 705, order_id="y", refund_id="r9",
               amount_cents=2) == "EXCEEDS_PAID"
    assert cmd(m, "RefundOrder", 705, order_id="y", refund_id="r9",
               amount_cents=1) == "OK"
    assert m.orders["y"].status == REFUNDED
    for k in ("y:1", "y:2", "y:3"):
        x = m.entries[k]
        assert x.reversed_cents == x.accrued_cents and x.status == \
            "REVERSED", k
    assert cmd(m, "RefundOrder", 800, order_id="y", refund_id="r0",
               amount_cents=1) == "IGNORED"
    assert cmd(m, "RefundOrder", 800, order_id="y", refund_id="rr",
               amount_cents=1) == "INVALID_STATE"
    assert cmd(m, "Tick", 10 ** 7) == "OK"
    assert m.orders["y"].status == REFUNDED
    # zero-rate level creates no entry but keeps level numbering
    act(m, "Z", price_cents=10, stock=100, per_user_limit=100,
        commission_bps=[0, 1000], start_ms=0, end_ms=10 ** 9)
    assert place(m, "z", "Z", "a", 1, 10 ** 7) == "OK"
    assert cmd(m, "ConfirmPayment", 10 ** 7, order_id="z", payment_id="p",
               amount_cents=10) == "OK"
    assert sorted(k for k in m.entries if k.startswith("z:")) == ["z:2"]
    assert m.entries["z:2"].accrued_cents == 1
    # TOO_MANY_REFUNDS after 50 refunds
    assert place(m, "w", "Z", "a", 10, 10 ** 7) == "OK"
    assert cmd(m, "ConfirmPayment", 10 ** 7, order_id="w", payment_id="p",
               amount_cents=100) == "OK"
    for i in range(50):
        assert cmd(m, "RefundOrder", 10 ** 7, order_id="w",
                   refund_id="r%d" % i, amount_cents=1) == "OK"
    assert cmd(m, "RefundOrder", 10 ** 7, order_id="w", refund_id="r50",
               amount_cents=101) == "EXCEEDS_PAID"
    assert cmd(m, "RefundOrder", 10 ** 7, order_id="w", refund_id="r50",
               amount_cents=1) == "TOO_MANY_REFUNDS"
    for x in m.entries.values():
        assert x.accrued_cents == (x.pending_cents + x.settled_cents +
                                   x.reversed_cents)
    print("model self-checks passed")


if __name__ == "__main__":
    _selfcheck()
