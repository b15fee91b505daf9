"""Seedance 1.5 Pro through runbase's ModelArk-compatible API, with BytePlus's own SDK.

pip install 'byteplus-python-sdk-v2[ark]'   # or volcengine-python-sdk[ark]
export RUNBASE_API_KEY=sk-...               # the key `make serve` printed
python examples/modelark.py [FIRST_FRAME.png]
"""

import base64
import os
import sys
import time
import urllib.request

from byteplussdkarkruntime import Ark  # or: from volcenginesdkarkruntime import Ark

base_url = os.environ.get("RUNBASE_BASE_URL", "http://127.0.0.1:8000")
client = Ark(base_url=f"{base_url}/api/v3", api_key=os.environ["RUNBASE_API_KEY"])

content = [{"type": "text", "text": "A paper boat drifts across a pond at dawn"}]
if len(sys.argv) > 1:  # a local first frame travels as a data URI (https:// URLs work too)
    with open(sys.argv[1], "rb") as image:
        data_uri = "data:image/png;base64," + base64.b64encode(image.read()).decode()
    content.append({"type": "image_url", "image_url": {"url": data_uri}, "role": "first_frame"})

created = client.content_generation.tasks.create(
    model="seedance-1-5-pro-251215",
    content=content,
    resolution="720p",
    ratio="16:9",
    duration=4,
)
while (task := client.content_generation.tasks.get(task_id=created.id)).status in (
    "queued",
    "running",
):
    time.sleep(2)
if task.status == "succeeded":
    urllib.request.urlretrieve(task.content.video_url, "boat.mp4")
    print("saved boat.mp4")
else:
    print("failed:", task.status, task.error)
    sys.exit(1)
