from __future__ import annotations

import pytest

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.messages import AnalysisJob, DeliveryJob, NodeEndpoint, OutputOptions


def test_parse_describe_and_message_round_trip() -> None:
    address = Address.parse("PACS@10.0.0.1:104/tls")
    assert address == Address("PACS", "10.0.0.1", 104, tls=True)
    assert address.describe() == "PACS@10.0.0.1:104/tls"
    assert Address.from_message(address.to_message()) == address


@pytest.mark.parametrize("text", ["PACS", "PACS@host", "PACS@host:port", "@10.0.0.1:104", "PACS@10.0.0.1:0"])
def test_malformed_destinations_say_the_expected_form(text: str) -> None:
    with pytest.raises(ConfigurationError, match=f"destination '{text}"):
        Address.parse(text)


def test_queue_messages_round_trip_as_json_types() -> None:
    dest = Address("PACS", "127.0.0.1", 4242)
    job = AnalysisJob("1.2.3", 2, NodeEndpoint("http://node:11180", "t.s", 30.0), OutputOptions("1.2.", False))
    assert AnalysisJob.from_message(job.to_message()) == job
    assert AnalysisJob.from_message(AnalysisJob("1.2.3", 2).to_message()) == AnalysisJob("1.2.3", 2)
    delivery = DeliveryJob("1.2.3", 2, dest)
    assert DeliveryJob.from_message(delivery.next_attempt().to_message()).attempt == 2


def test_malformed_messages_are_refused_with_the_message() -> None:
    with pytest.raises(ValueError, match="malformed analysis job message"):
        AnalysisJob.from_message({"generation": 1})
