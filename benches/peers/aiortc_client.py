"""A reference client for the session benchmark: the same conversation realtime-voiced has,
made by aiortc (a WebRTC stack we did not write; needs only aiortc and aiohttp) against the realtime simulator.

It mints a token, makes the WebRTC call, sends `session.update`, plays a tone burst into the
call, and reports connect time, the time from the burst's end to the echo's onset, CPU time per
second of audio and peak RSS, as one JSON line on stdout.

With `--call`, the sound runs for the whole call (a raw S16LE 48 kHz file given with `--audio`,
looped, or the tone) (a two-way continuous call against a mirroring
simulator): after `--warm-up W` seconds, CPU, context switches and how much of the received audio
holds the tone are measured over SECONDS.

usage: aiortc_client.py BASE_URL SECONDS [--call] [--warm-up W] [--audio RAW]
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


# One second of 440 Hz (exactly 440 cycles), precomputed so that the call's cost is aiortc's.
LOOP = array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(RATE))).tobytes()


class ToneTrack(MediaStreamTrack):
    """20 ms frames in real time: silence, a 440 Hz burst, then silence (or the tone throughout)."""

    kind = "audio"

    def __init__(self, continuous=False, sound=LOOP):
        super().__init__()
        self.sound = sound
        self.sent = 0
        self.t0 = None
        self.burst_end = None
        self.continuous = continuous

    async def recv(self):
        if self.t0 is None:
            self.t0 = time.monotonic()
        due = self.t0 + self.sent / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.continuous:
            at = (2 * self.sent) % len(self.sound)
            chunk = self.sound[at:at + 2 * FRAME]
            if len(chunk) < 2 * FRAME:
                chunk += self.sound[:2 * FRAME - len(chunk)]
            frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
            frame.planes[0].update(chunk)
            frame.sample_rate = RATE
            frame.pts = self.sent
            frame.time_base = fractions.Fraction(1, RATE)
            self.sent += FRAME
            return frame
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


async def main(base, seconds, call=False, warm_up=0.0, sound=LOOP):
    cpu0 = time.process_time()
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(f"{base}/realtime/client_secrets", json={"session": {"type": "realtime"}},
                             headers={"Authorization": "Bearer sk-bench"}) as r:
            token = (await r.json())["value"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel = pc.createDataChannel("oai-events")
        track = ToneTrack(continuous=call, sound=sound)
        pc.addTrack(track)
        echo = {"onset": None, "frames": 0, "sampled": 0, "loud": 0}
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
                    if call:
                        # One frame in 50 (once a second) is looked at: cheap enough not to count.
                        if echo["frames"] % 50 == 0:
                            data = array("h", bytes(frame.planes[0]))
                            rms = math.sqrt(sum(x * x for x in data) / max(len(data), 1))
                            echo["sampled"] += 1
                            echo["loud"] += rms > 300
                        continue
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
        warm0 = time.process_time()
        await asyncio.sleep(warm_up)
        warm_cpu = time.process_time() - warm0
        if call:
            cpu0 = time.process_time()
            echo["sampled"] = echo["loud"] = 0
        switches0 = context_switches()
        wall0 = time.monotonic()
        await asyncio.sleep(seconds)
        switches = context_switches() - switches0
        cpu = time.process_time() - cpu0
        seconds = time.monotonic() - wall0
        await pc.close()
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
        "warm_up_cpu_ms_per_s": round(warm_cpu * 1000 / warm_up, 2) if warm_up else None,
        "audio_pct": round(100 * echo["loud"] / echo["sampled"], 1) if echo["sampled"] else None,
        "frames_received": echo["frames"],
    }))


if __name__ == "__main__":
    args = sys.argv[1:]
    warm = float(args[args.index("--warm-up") + 1]) if "--warm-up" in args else 0.0
    sound = LOOP
    if "--audio" in args:
        with open(args[args.index("--audio") + 1], "rb") as f:
            sound = f.read()
        sound = sound[:len(sound) // (2 * FRAME) * 2 * FRAME] or LOOP
    asyncio.run(main(args[0], float(args[1]), call="--call" in args, warm_up=warm, sound=sound))
