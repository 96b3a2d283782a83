"""The per-edge dot product's gather (dgl_bilevel.ops._EdgeDot) by advanced indexing, as before
2026-12-02, against index_select, as now: seconds of one unrolled (torch-graph) outer iteration of
the Cora GNN, alternated in one process, and the largest hypergradient difference (0: same maths).

    OMP_NUM_THREADS=1 .venv/bin/python bench/edge_dot_gather.py
"""
import time, torch, statistics
import dgl_bilevel as dbl
from dgl_bilevel import ops
from dgl_bilevel.losses import task_loss
import os
from pathlib import Path
data = dbl.data.cora(os.environ.get("DGL_BILEVEL_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
inner = dbl.TrainedGNN(dbl.models.SumAggGNN(data.num_features, 16, data.num_classes), steps=100)
structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(0))
inner.bind(data, structure.graph)
method = dbl.Unrolled(reverse="autograd")
def it():
    gen = torch.Generator().manual_seed(0)
    t=time.perf_counter()
    w = structure()
    sol = method.solve(inner, w, inner.starting_params(gen))
    loss = task_loss(inner.predict(sol.params, w), data.labels, data.v_out, data.task)
    structure.zero_grad(); loss.backward()
    return time.perf_counter()-t, [p.grad.clone() for p in structure.parameters()]
new=ops._EdgeDot.forward
def old(ctx,a,b,plan,direction):
    ctx.save_for_backward(a, b); ctx.plan, ctx.direction = plan, direction
    rows, cols = plan.endpoints(direction)
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return (a2[rows] * b2[cols]).sum(-1)
it()
T={"old":[],"new":[]}; G={}
for k in range(4):
    for name,f in (("old",old),("new",new)):
        ops._EdgeDot.forward=staticmethod(f)
        t,g=it(); T[name].append(t); G[name]=g
print({k:[round(x,3) for x in v] for k,v in T.items()}, "median ratio new/old", statistics.median(T["new"])/statistics.median(T["old"]))
print("max grad diff", max(float((a-b).abs().max()) for a,b in zip(G["old"],G["new"])), float(G["old"][0].abs().max()))
