"""A reference client for the session benchmark: the same conversation realtime-voiced has,
made by aiortc (a WebRTC stack we did not write; needs only aiortc and aiohttp) against the realtime simulator.

It mints a token, makes the WebRTC call, sends `session.update`, plays a tone burst into the
call, and reports connect time, the time from the burst's end to the echo's onset, CPU time per
second of audio and peak RSS, as one JSON line on stdout.

usage: aiortc_client.py BASE_URL SECONDS
"""
import asyncio
import fractions
import json
import math
import os
import resource
import sys
import time

import aiohttp
import aioice.ice
from array import array
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

# Loopback only: aioice skips 127.0.0.1 unless told otherwise.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

RATE = 48000
FRAME = 960
TONE_START_S, TONE_LEN_S = 1.0, 0.8


class ToneTrack(MediaStreamTrack):
    """20 ms frames in real time: silence, a 440 Hz burst, then silence."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.sent = 0
        self.t0 = None
        self.burst_end = None

    async def recv(self):
        if self.t0 is None:
            self.t0 = time.monotonic()
        due = self.t0 + self.sent / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        samples = array("h", bytes(2 * FRAME))
        for i in range(FRAME):
            t = (self.sent + i) / RATE
            if TONE_START_S <= t < TONE_START_S + TONE_LEN_S:
                samples[i] = int(8000 * math.sin(2 * math.pi * 440 * t))
        if self.burst_end is None and self.sent / RATE >= TONE_START_S + TONE_LEN_S:
            self.burst_end = time.monotonic()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self.sent
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += FRAME
        return frame


def context_switches():
    """Voluntary and involuntary context switches of all of this process's threads."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def main(base, seconds):
    cpu0 = time.process_time()
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(f"{base}/realtime/client_secrets", json={"session": {"type": "realtime"}},
                             headers={"Authorization": "Bearer sk-bench"}) as r:
            token = (await r.json())["value"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel = pc.createDataChannel("oai-events")
        track = ToneTrack()
        pc.addTrack(track)
        echo = {"onset": None, "frames": 0}
        opened = asyncio.Event()

        @pc.on("track")
        def on_track(remote):
            async def pull():
                while True:
                    try:
                        frame = await remote.recv()
                    except Exception:
                        return
                    echo["frames"] += 1
                    data = array("h", bytes(frame.planes[0]))
                    if echo["onset"] is None and track.burst_end and data:
                        rms = math.sqrt(sum(x * x for x in data) / len(data))
                        if rms > 500:
                            echo["onset"] = time.monotonic()
            asyncio.ensure_future(pull())

        @channel.on("open")
        def on_open():
            channel.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            opened.set()

        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{base}/realtime/calls", data=pc.localDescription.sdp,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/sdp"}) as r:
            if r.status != 201:
                raise SystemExit(f"call refused: {r.status} {await r.text()}")
            answer = await r.text()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(opened.wait(), 10)
        connected_ms = (time.monotonic() - started) * 1000
        switches0 = context_switches()
        await asyncio.sleep(seconds)
        switches = context_switches() - switches0
        await pc.close()
    cpu = time.process_time() - cpu0
    latency = None
    if echo["onset"] and track.burst_end:
        latency = (echo["onset"] - track.burst_end) * 1000
    print(json.dumps({
        "client": "aiortc",
        "connect_ms": round(connected_ms, 1),
        "burst_end_to_echo_onset_ms": None if latency is None else round(latency, 1),
        "cpu_ms_per_audio_s": round(cpu * 1000 / seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "context_switches_per_s": round(switches / seconds, 1),
        "frames_received": echo["frames"],
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
