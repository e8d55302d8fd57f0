"""A stand-in for the Realtime service's WebRTC endpoint, built on aiortc.

POST /v1/realtime/calls takes an SDP offer (application/sdp, Bearer token) and answers 201 with
an SDP answer and a Location header. The caller's Opus track is echoed back through a
MediaRelay; on the `oai-events` data channel it sends `session.created` when the channel opens
and answers `session.update` with `session.updated`. POST .../hangup ends the call. GET /stats
tells the test what it saw (candidate types in the offer, events, hang-ups).

Loopback only: aioice is told that 127.0.0.1 is the only host address, and no STUN server is
configured. Prints `PORT <n>` on stdout once listening.

`--lose-every N` drops every Nth RTP packet from the caller as it arrives, before aiortc counts
it: the loss a bad path causes, as aiortc's own receiver reports then tell the caller. Either
way /stats shows how the caller's Opus packets were coded (`opus_modes`: runs of SILK, hybrid or
CELT, from each packet's TOC byte, RFC 6716 3.1) and how long their frames were (`opus_frame_ms`,
packets counted by milliseconds).
"""

import argparse
import asyncio
import json
import re
import sys

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

from aiohttp import web  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.rtcrtpreceiver import RTCRtpReceiver  # noqa: E402

TOKEN = "test-ephemeral-token"

relay = MediaRelay()
calls = {}
stats = {
    "offers": [],
    "events": [],
    "hangups": [],
    "states": [],
    "opus_modes": [],
    "opus_frame_ms": {},
    "dropped": 0,
}


def opus_toc(payload):
    """The coding mode (SILK, hybrid or CELT) and the frame length in ms (as text) of an Opus
    packet, from the configuration number in its TOC byte (RFC 6716, 3.1)."""
    if not payload:
        return "empty", "empty"
    config = payload[0] >> 3
    if config < 12:
        return "silk", str((10, 20, 40, 60)[config % 4])
    if config < 16:
        return "hybrid", str((10, 20)[config % 2])
    return "celt", str((2.5, 5, 10, 20)[config % 4])


def watch_incoming_rtp(lose_every):
    """Wraps aiortc's receiver: records each caller packet's Opus mode and frame length, drops
    every Nth."""
    handle = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    if handle is None:
        sys.exit("aiortc changed: RTCRtpReceiver._handle_rtp_packet is gone")
    arrived = 0

    async def watched(self, packet, *args, **kwargs):
        nonlocal arrived
        arrived += 1
        mode, size = opus_toc(packet.payload)
        runs = stats["opus_modes"]
        if runs and runs[-1][0] == mode:
            runs[-1][1] += 1
        else:
            runs.append([mode, 1])
        sizes = stats["opus_frame_ms"]
        sizes[size] = sizes.get(size, 0) + 1
        if lose_every and arrived % lose_every == 0:
            stats["dropped"] += 1
            return
        return await handle(self, packet, *args, **kwargs)

    RTCRtpReceiver._handle_rtp_packet = watched


def candidate_types(sdp):
    return re.findall(r"^a=candidate:.* typ (\w+)", sdp, flags=re.M)


async def create_call(request):
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return web.json_response(
            {"error": {"message": "Invalid ephemeral key.", "type": "invalid_request_error"}},
            status=401,
        )
    if request.content_type != "application/sdp":
        return web.json_response(
            {"error": {"message": f"expected application/sdp, got {request.content_type}"}},
            status=415,
        )
    offer_sdp = await request.text()
    stats["offers"].append({"candidate_types": candidate_types(offer_sdp)})

    call_id = f"rtc_aiortc_{len(calls) + 1}"
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    calls[call_id] = pc

    @pc.on("connectionstatechange")
    async def on_state():
        stats["states"].append(pc.connectionState)

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            pc.addTrack(relay.subscribe(track))

    @pc.on("datachannel")
    def on_datachannel(channel):
        stats["events"].append({"label": channel.label, "ordered": channel.ordered})

        def send(event):
            channel.send(json.dumps(event))

        send({"type": "session.created", "session": {"id": f"sess_{call_id}"}})

        @channel.on("message")
        def on_message(message):
            try:
                event = json.loads(message)
            except ValueError:
                stats["events"].append({"malformed": str(message)[:100]})
                return
            stats["events"].append({"type": event.get("type")})
            if event.get("type") == "session.update":
                send({"type": "session.updated", "session": event.get("session", {})})

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    answer = await pc.createAnswer()
    await pc.setLocalDescription(answer)
    return web.Response(
        status=201,
        text=pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call_id}"},
    )


async def hangup(request):
    call_id = request.match_info["call_id"]
    stats["hangups"].append(call_id)
    pc = calls.pop(call_id, None)
    if pc is None:
        return web.json_response({"error": {"message": "no such call"}}, status=404)
    await pc.close()
    return web.Response(status=200)


async def get_stats(_request):
    return web.json_response(stats)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lose-every", type=int, default=0)
    watch_incoming_rtp(parser.parse_args().lose_every)
    app = web.Application()
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup)
    app.router.add_get("/stats", get_stats)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    # Runs until the test kills it; stdin closing (the test went away) also ends it.
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def watch_stdin():
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set_result, None)

    loop.run_in_executor(None, watch_stdin)
    await stdin_closed
    for pc in list(calls.values()):
        await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
