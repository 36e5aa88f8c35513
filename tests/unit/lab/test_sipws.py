"""The lab's SIP-over-WebSocket REGISTER: the digest arithmetic against RFC 2617's own example."""

from __future__ import annotations

from lab import sipws


def test_digest_matches_rfc_2617_section_3_5() -> None:
    challenge = sipws.challenge_params(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = sipws.digest_authorization(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_parse_response_reads_status_and_repeated_headers() -> None:
    reply = sipws.parse_response(
        "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/WSS x\r\n"
        'WWW-Authenticate: Digest realm="asterisk",nonce="1",algorithm=SHA-256\r\n'
        'WWW-Authenticate: Digest realm="asterisk",nonce="2",algorithm=MD5\r\n\r\n'
    )
    assert reply.status == 401 and reply.reason == "Unauthorized"
    assert reply.header("www-authenticate").endswith("SHA-256")
    assert len(reply.headers["www-authenticate"]) == 2


def test_register_message_is_rfc_7118_shaped() -> None:
    text = sipws.register_message(user="agent1001-webrtc", domain="127.0.0.1", call_id="c", cseq=2, tag="t", branch="b")
    assert text.startswith("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WSS lab.invalid;branch=z9hG4bKb\r\n")
    assert text.endswith("Content-Length: 0\r\n\r\n")
