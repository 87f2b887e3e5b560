"""Run inside Blender: import a BVH and print what Blender sees, as JSON on the last line.

blender -b --factory-startup --python tests/blender_bvh.py -- FILE.bvh FRAME [FRAME ...]
"""

import builtins
import json
import sys

import bpy

# Blender 3.4's importer opens files with mode "rU", which Python 3.11 rejects.
_open = builtins.open


def _open_without_u(file, mode="r", *args, **kwargs):
    return _open(file, mode.replace("U", ""), *args, **kwargs)


builtins.open = _open_without_u

argv = sys.argv[sys.argv.index("--") + 1 :]
path, frames = argv[0], [int(f) for f in argv[1:]]
bpy.ops.import_anim.bvh(
    filepath=path,
    global_scale=0.01,
    update_scene_fps=True,
    update_scene_duration=True,
    rotate_mode="NATIVE",
)
armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
action = armature.animation_data.action
scene = bpy.context.scene
positions = {}
for frame in frames:
    scene.frame_set(frame)
    positions[frame] = {b.name: list(armature.matrix_world @ b.head) for b in armature.pose.bones}
print(
    json.dumps(
        {
            "bones": [b.name for b in armature.data.bones],
            "frame_range": list(action.frame_range),
            "fps": scene.render.fps / scene.render.fps_base,
            "positions": positions,
        }
    )
)
