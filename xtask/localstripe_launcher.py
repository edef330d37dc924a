"""Serve localstripe (PyPI `localstripe`, a stateful fake of the Stripe API) on 127.0.0.1 with a
fidelity shim, for the payments worker's tests and `cargo xtask up`.

localstripe alone differs from Stripe in ways a typed client or a real checkout notices; the shim
mends exactly these, each as Stripe documents it:

- it binds `::` and pickles its store to a fixed `/tmp/localstripe.pickle` shared by every
  instance: here it binds 127.0.0.1 and keeps its store in memory (or in `--store FILE`);
- balance transactions carry no fees: a charge's has Stripe's standard card fee (2.9 % + 30
  minor units) with its `fee_details` and `balance_type`, and listing them by `source` works;
- a PaymentIntent's `description` is refused ("Unexpected description"): it is kept;
- PaymentIntents lack `amount_capturable`, `amount_received`, `confirmation_method` and
  `payment_method_types`, which async-stripe requires, and embed `latest_charge` unexpanded:
  the fields are filled in, `latest_charge` is an id unless `expand[]=latest_charge`, and
  `last_payment_error` gets its `type` (`card_error`);
- a PaymentIntent cannot be confirmed the way Stripe.js does it (publishable key, the intent's
  `client_secret` and a `payment_method`), nor again with another card after a decline:
  both supported, with the client secret checked;
- Stripe's test payment method `pm_card_chargeDeclined` is unknown: it is a card whose charges
  are declined (`card_declined`);
- `Idempotency-Key` is ignored: a POST with a key seen before (for the same secret key and path)
  replays the first response, as Stripe does;
- a failed webhook delivery is never retried: deliveries are retried with growing delays.
  Webhooks can be registered at start (`--webhook URL --webhook-secret whsec_...`) or with
  localstripe's own `POST /_config/webhooks/{id}`.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import pickle
import re
import sys

from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.client_exceptions import ClientError

from localstripe import resources, server, webhooks
from localstripe.errors import UserError
from localstripe.resources import BalanceTransaction, PaymentIntent, PaymentMethod

log = logging.getLogger("localstripe-launcher")

STORE_PATH = None


# -- the store: in memory, or pickled to --store ---------------------------------------------

def _dump(self):
    if STORE_PATH:
        with open(STORE_PATH, "wb") as f:
            pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)


def _load(self):
    if not STORE_PATH:
        return
    try:
        with open(STORE_PATH, "rb") as f:
            old = pickle.load(f)
    except FileNotFoundError:
        return
    self.clear()
    dict.update(self, old)


resources.Store.dump_to_disk = _dump
resources.Store.try_load_from_disk = _load


# -- PaymentIntent fields async-stripe requires ----------------------------------------------

_original_export = PaymentIntent._export


def _payment_intent_export(self, expand=None):
    obj = _original_export(self, expand=expand)
    status = obj.get("status")
    amount = obj.get("amount") or 0
    obj.setdefault("amount_capturable", amount if status == "requires_capture" else 0)
    obj.setdefault("amount_received", amount if status == "succeeded" else 0)
    obj.setdefault("confirmation_method", "automatic")
    obj.setdefault("payment_method_types", ["card"])
    charge = obj.get("latest_charge")
    if isinstance(charge, dict) and "latest_charge" not in (expand or []):
        obj["latest_charge"] = charge.get("id")
    obj.pop("charges", None)  # removed from the API in 2022-11-15
    error = obj.get("last_payment_error")
    if isinstance(error, dict):
        # Stripe's error objects always say their type (a decline is a `card_error`).
        error.setdefault("type", "card_error")
        if error.get("code") == "card_declined":
            error.setdefault("decline_code", "generic_decline")
    return obj


PaymentIntent._export = _payment_intent_export


# -- PaymentIntent parameters localstripe refuses ----------------------------------------------

_original_create = PaymentIntent._api_create.__func__


@classmethod
def _payment_intent_create(cls, description=None, **data):
    obj = _original_create(cls, **data)
    obj.description = description
    return obj


PaymentIntent._api_create = _payment_intent_create


# -- processing fees, as Stripe's balance transactions report them ---------------------------

_original_bt_init = BalanceTransaction.__init__


def _balance_transaction_init(self, *args, **kwargs):
    _original_bt_init(self, *args, **kwargs)
    self.balance_type = "payments"
    if self.type == "charge" and self.amount > 0:
        # Stripe's standard card pricing: 2.9 % + 30 minor units (rounded half up).
        fee = min(self.amount, (self.amount * 29 + 500) // 1000 + 30)
        self.fee = fee
        self.fee_details = [{"amount": fee, "application": None, "currency": self.currency,
                             "description": "Stripe processing fees", "type": "stripe_fee"}]


BalanceTransaction.__init__ = _balance_transaction_init

_original_bt_list = BalanceTransaction._api_list_all.__func__


@classmethod
def _balance_transaction_list(cls, url, source=None, type=None, limit=None, starting_after=None, **kwargs):
    li = _original_bt_list(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if source is not None:
        li._list = [t for t in li._list if t.source == source]
    if type is not None:
        li._list = [t for t in li._list if t.type == type]
    return li


BalanceTransaction._api_list_all = _balance_transaction_list


# -- Stripe's test payment methods localstripe lacks -----------------------------------------

_original_retrieve = PaymentMethod._api_retrieve.__func__


@classmethod
def _payment_method_retrieve(cls, id):
    if id == "pm_card_chargeDeclined":
        # Attaches fine, every charge is declined (localstripe's charge-declined card number).
        return PaymentMethod(type="card", card=dict(number="4000000000000341", exp_month="12",
                                                     exp_year="2030", cvc="123"))
    return _original_retrieve(cls, id)


PaymentMethod._api_retrieve = _payment_method_retrieve


# -- confirming with a payment method (server side, or Stripe.js with pk + client_secret) ----

@classmethod
def _payment_intent_confirm(cls, id, payment_method=None, client_secret=None, return_url=None,
                            **kwargs):
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    if not (isinstance(id, str) and id.startswith("pi_")):
        raise UserError(400, "Bad request")
    obj = cls._api_retrieve(id)
    if client_secret is not None and not hmac.compare_digest(str(client_secret), obj.client_secret):
        raise UserError(401, "The client_secret does not match this PaymentIntent.",
                        {"code": "payment_intent_invalid_parameter"})
    if payment_method is not None:
        if obj.status not in ("requires_payment_method", "requires_confirmation"):
            raise UserError(400, "This PaymentIntent's status is %s." % obj.status,
                            {"code": "payment_intent_unexpected_state"})
        obj.payment_method = PaymentMethod._api_retrieve(payment_method).id
        if obj.latest_charge is not None and obj.latest_charge.status == "failed":
            # A new attempt after a decline: Stripe makes a new charge (the failed one stays).
            obj.latest_charge = None
    if obj.status != "requires_confirmation":
        raise UserError(400, "This PaymentIntent's status is %s." % obj.status,
                        {"code": "payment_intent_unexpected_state"})
    obj._confirm(on_failure_now=obj._report_failure)
    return obj


PaymentIntent._api_confirm = _payment_intent_confirm

CONFIRM_PATH = re.compile(r"^/v1/payment_intents/(pi_\w+)/confirm$")


@web.middleware
async def client_confirm(request, handler):
    """Stripe.js confirms with the publishable key and the client secret, not a secret key."""
    match = CONFIRM_PATH.match(request.path)
    if request.method != "POST" or not match or server.get_api_key(request) is not None:
        return await handler(request)
    data = await server.get_post_data(request, remove_auth=False) or {}
    key = data.pop("key", None)
    if not (isinstance(key, str) and key.startswith("pk_")) or "client_secret" not in data:
        raise UserError(401, "Unauthorized")
    data.pop("expand", None)
    obj = _payment_intent_confirm.__func__(PaymentIntent, match.group(1), **data)
    return server.json_response(obj._export())


# -- Idempotency-Key -------------------------------------------------------------------------

_replies = {}


@web.middleware
async def idempotency(request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    cache_key = (request.headers.get("Authorization", ""), request.path, key)
    if cache_key in _replies:
        status, body = _replies[cache_key]
        response = web.Response(status=status, body=body, content_type="application/json")
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        response = await handler(request)
    except UserError as e:
        response = e.to_response()
    if response.status < 500 and isinstance(response, web.Response) and response.body is not None:
        _replies[cache_key] = (response.status, bytes(response.body))
    return response


# -- webhooks, retried -----------------------------------------------------------------------

RETRY_DELAYS = (0.2, 1, 2, 4, 8, 16)


async def _deliver(webhook, event_type, payload, created):
    signed = b"%d.%s" % (created, payload)
    signature = hmac.new(webhook.secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Stripe-Signature": "t=%d,v1=%s" % (created, signature)}
    for attempt, delay in enumerate(RETRY_DELAYS, start=1):
        await asyncio.sleep(delay)
        try:
            async with ClientSession(timeout=ClientTimeout(total=10)) as session:
                async with session.post(webhook.url, data=payload, headers=headers) as r:
                    if 200 <= r.status < 300:
                        log.info("webhook %s delivered to %s (attempt %d)", event_type, webhook.url, attempt)
                        return
                    log.info("webhook %s to %s: HTTP %d (attempt %d)", event_type, webhook.url, r.status, attempt)
        except (ClientError, asyncio.TimeoutError) as e:
            log.info("webhook %s to %s failed: %s (attempt %d)", event_type, webhook.url, e, attempt)
    log.warning("webhook %s to %s: gave up after %d attempts", event_type, webhook.url, len(RETRY_DELAYS))


async def _send_webhook(event):
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
    targets = [w for w in webhooks._webhooks.values() if w.events is None or event.type in w.events]
    await asyncio.gather(*(_deliver(w, event.type, payload, event.created) for w in targets))


webhooks._send_webhook = _send_webhook


def main():
    global STORE_PATH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", help="keep the store in this file across restarts")
    parser.add_argument("--webhook", help="deliver every event to this URL")
    parser.add_argument("--webhook-secret", help="the whsec_... signing secret of --webhook")
    args = parser.parse_args()
    STORE_PATH = args.store
    resources.store.try_load_from_disk()
    if args.webhook:
        if not args.webhook_secret:
            parser.error("--webhook needs --webhook-secret")
        webhooks.register_webhook("launcher", args.webhook, args.webhook_secret, None)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    app = server.app
    app.middlewares.insert(1, idempotency)
    app.middlewares.insert(2, client_confirm)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=logging.getLogger("aiohttp.access"),
                print=lambda *_: None)


if __name__ == "__main__":
    main()
