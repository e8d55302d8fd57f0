#!/usr/bin/python3
"""Offers realtime-voiced's assistant a tool that switches a light through Home Assistant.

The program registers the tool with RegisterTool on the system bus, answers the daemon's
io.thrive.RealtimeVoice1.ToolProvider.Call at /io/thrive/RealtimeVoice1/ToolProvider, and
registers again whenever the daemon (re)appears. When it exits, the tool goes with it.

Needs only Debian packages: python3 and python3-gi (GDBus). Run it as a member of the group
realtime-voice (the bus policy refuses RegisterTool to other users):

    HA_URL=http://homeassistant.local:8123 HA_TOKEN=... HA_ENTITY=light.living_room \
        python3 tool-provider.py

Environment:
    HA_URL     Home Assistant's address (default http://homeassistant.local:8123)
    HA_TOKEN   a long-lived access token (Home Assistant: your profile, Security)
    HA_ENTITY  the light's entity id (default light.living_room)
    TOOL_NAME  the tool's name for the model (default living_room_light)
"""

import json
import os
import sys
import urllib.error
import urllib.request

from gi.repository import Gio, GLib

DAEMON = "io.thrive.RealtimeVoice1"
DAEMON_PATH = "/io/thrive/RealtimeVoice1"
PROVIDER_PATH = "/io/thrive/RealtimeVoice1/ToolProvider"
PROVIDER_XML = """
<node>
  <interface name="io.thrive.RealtimeVoice1.ToolProvider">
    <method name="Call">
      <arg name="name" type="s" direction="in"/>
      <arg name="arguments_json" type="s" direction="in"/>
      <arg name="result_json" type="s" direction="out"/>
    </method>
  </interface>
</node>
"""

HA_URL = os.environ.get("HA_URL", "http://homeassistant.local:8123").rstrip("/")
HA_TOKEN = os.environ.get("HA_TOKEN", "")
ENTITY = os.environ.get("HA_ENTITY", "light.living_room")
TOOL = os.environ.get("TOOL_NAME", "living_room_light")

DESCRIPTION = f"Switch the light {ENTITY} on or off, or toggle it; returns its new state."
PARAMETERS = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["on", "off", "toggle"]},
    },
}
SERVICES = {"on": "turn_on", "off": "turn_off", "toggle": "toggle"}

# The daemon's unique bus name while it runs: only its calls are answered.
daemon_owner = None


def log(text):
    print(text, file=sys.stderr, flush=True)


def home_assistant(method, path, body=None):
    """One request to Home Assistant's REST API; its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        HA_URL + path,
        data=data,
        method=method,
        headers={
            "Authorization": "Bearer " + HA_TOKEN,
            "Content-Type": "application/json",
        },
    )
    # Shorter than the daemon's 10 s: a late answer would reach no one.
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read() or b"null")


def switch(arguments):
    action = arguments.get("action", "toggle")
    if action not in SERVICES:
        raise ValueError(f"action must be on, off or toggle, not {action!r}")
    home_assistant("POST", f"/api/services/light/{SERVICES[action]}", {"entity_id": ENTITY})
    state = home_assistant("GET", f"/api/states/{ENTITY}")
    return {"entity_id": ENTITY, "state": state.get("state")}


def on_call(connection, sender, path, interface, method, parameters, invocation):
    if sender != daemon_owner:
        invocation.return_dbus_error(
            "org.freedesktop.DBus.Error.AccessDenied", "only realtime-voiced calls this"
        )
        return
    name, arguments_json = parameters.unpack()
    log(f"call {name} {arguments_json}")
    try:
        if name != TOOL:
            raise ValueError(f"no tool {name} here")
        arguments = json.loads(arguments_json or "{}")
        if not isinstance(arguments, dict):
            arguments = {}
        result = json.dumps(switch(arguments))
    except (ValueError, OSError, urllib.error.URLError) as e:
        # An error reply becomes a short error text for the model.
        invocation.return_dbus_error(
            "io.thrive.RealtimeVoice1.ToolProvider.Error.Failed", str(e).splitlines()[0]
        )
        return
    log(f"result {result}")
    invocation.return_value(GLib.Variant("(s)", (result,)))


def register(connection, name, owner):
    global daemon_owner
    daemon_owner = owner
    try:
        connection.call_sync(
            DAEMON,
            DAEMON_PATH,
            DAEMON,
            "RegisterTool",
            GLib.Variant("(sss)", (TOOL, DESCRIPTION, json.dumps(PARAMETERS))),
            None,
            Gio.DBusCallFlags.NONE,
            5000,
            None,
        )
    except GLib.Error as e:
        log(f"cannot register {TOOL}: {e.message}")
        return
    log(f"registered {TOOL} with {owner}")


def gone(connection, name):
    global daemon_owner
    daemon_owner = None
    log("realtime-voiced is not on the bus; waiting for it")


def main():
    bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
    interface = Gio.DBusNodeInfo.new_for_xml(PROVIDER_XML).interfaces[0]
    bus.register_object(PROVIDER_PATH, interface, on_call, None, None)
    # Registers now if the daemon runs, and again each time it comes back.
    Gio.bus_watch_name_on_connection(
        bus, DAEMON, Gio.BusNameWatcherFlags.NONE, register, gone
    )
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15, loop.quit)  # SIGTERM
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 2, loop.quit)  # SIGINT
    loop.run()


if __name__ == "__main__":
    main()
