"""Standard Webhooks signing and the documented verification helper."""

from __future__ import annotations

import pytest

from stellargate.settings import WebhookSettings
from stellargate.webhooks import WebhookVerificationError, backoff, new_secret, sign, signature_header, verify

# The reference vector of the Standard Webhooks specification's test suite.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID, TS, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'


def test_the_reference_vector() -> None:
    assert sign(SECRET, MSG_ID, TS, BODY) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(sig: str, ts: int = TS) -> dict[str, str]:
    return {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(ts), "Webhook-Signature": sig}


def test_verify_accepts_either_secret_during_a_rotation() -> None:
    new = new_secret()
    assert new.startswith("whsec_")
    both = signature_header([new, SECRET], MSG_ID, TS, BODY)
    verify(SECRET, headers(both), BODY, now=TS)
    verify(new, headers(both), BODY, now=TS + 299)
    verify([new_secret(), SECRET], headers(both), BODY, now=TS)


@pytest.mark.parametrize(
    ("hdrs", "body", "now"),
    [
        (headers(sign(SECRET, MSG_ID, TS, BODY)), BODY + b" ", TS),  # body changed
        (headers(sign(SECRET, MSG_ID, TS, BODY)), BODY, TS + 301),  # too old: a replay
        (headers(sign(new_secret(), MSG_ID, TS, BODY)), BODY, TS),  # another secret
        ({"webhook-id": MSG_ID}, BODY, TS),  # headers missing
    ],
)
def test_verify_refuses(hdrs: dict[str, str], body: bytes, now: float) -> None:
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, hdrs, body, now=now)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    s = WebhookSettings(backoff_initial=1.0, backoff_max=10.0)
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0)):
        for _ in range(50):
            assert 0.5 * base <= backoff(s, attempt) < 1.5 * base
