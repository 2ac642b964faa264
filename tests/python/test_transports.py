"""What the key says it is reachable over (getInfo transports, CTAP 2.1 §6.4).

One state directory is one key: `pocketkey serve` presents it over USB (CTAPHID), `pocketkey
hybrid` over the hybrid transport, and a paired computer's bridge over USB again. Every command
opens it with the same configuration, so getInfo names both wherever it is asked, as the phone
app's key does."""


def test_serve_advertises_every_transport_of_the_key(ctap2):
    assert ctap2.get_info().transports == ["hybrid", "usb"]
