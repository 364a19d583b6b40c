"""Deleting a benchmark's own topics at its end (cleanup only: a failure
is printed, not raised)."""
import os


def delete_topics_of(tags):
    """Deletes every topic whose name starts with one of tags and a dot."""
    try:
        from kafka import KafkaAdminClient
        adm = KafkaAdminClient(bootstrap_servers=os.environ.get(
            "ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
        mine = [t for t in adm.list_topics()
                if any(t.startswith(g + ".") for g in tags)]
        if mine:
            adm.delete_topics(mine)
        adm.close()
    except Exception as e:  # noqa: BLE001 (cleanup only)
        print("cleanup: %s" % e)
