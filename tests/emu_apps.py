"""Applications run both ways: under ``qstack.simulate`` and against an emulated network.

Written for ``tests/emu_line.toml`` (alice -- repeater -- bob) but naming
only the nodes they run on. Nothing here peeks at simulated state: every
figure is measured, as it would be on hardware, so the same functions give
the same statistics under both drivers (``tests/test_emu.py``).

``qstack run NODE tests/emu_apps.py`` runs ``APPS`` (alice teleports
``N_TELEPORT`` six-state qubits to bob, who counts the right outcomes).
"""
from __future__ import annotations

PORT = 11
N_TELEPORT = 60

#: The six states +-Z, +-X, +-Y: a state index k is (basis, bit) = (k // 2, k % 2);
#: prepared from |0> by the gates, measured back in BASES[basis].
BASES = ("Z", "X", "Y")


def _prepare(q, k: int) -> None:
    basis, bit = divmod(k, 2)
    if bit:
        q.x()
    if basis == 1:
        q.h()                       # |0>,|1> -> |+>,|->
    elif basis == 2:
        q.h()
        q.s()                       # |0>,|1> -> |+i>,|-i>


def teleport_apps(n: int, src: str = "alice", dst: str = "bob") -> dict:
    """``src`` teleports ``n`` qubits, state k = i % 6 of the six, to ``dst``,
    which measures each in its basis and returns ``{"right": r, "qubits": n}``.
    Over a Werner pair of fidelity F the chance of the right outcome is
    (2F + 1)/3 for every state (teleportation is then a depolarising channel)."""

    async def sender(ctx):
        async with await ctx.connect(dst, PORT) as sock:
            for i in range(n):
                q = ctx.qubit()
                _prepare(q, i % 6)
                await sock.send_qubit(q, metadata=bytes([i % 6]))
        return n

    async def receiver(ctx):
        sock = await ctx.listen(PORT).accept()
        right = 0
        for _ in range(n):
            q = await sock.recv_qubit()
            basis, bit = divmod(q.metadata[0], 2)
            right += (await q.measure(BASES[basis])) == bit
        await sock.close()
        return {"right": right, "qubits": n}

    return {src: sender, dst: receiver}


def epr_apps(n: int, measured: bool, a: str = "alice", b: str = "bob",
             batch: int = 10, together: bool = False) -> dict:
    """``a`` creates ``n`` EPR pairs with ``b`` in batches of ``batch``; both
    measure batch k's halves in Z (k even) or X (k odd): kept and measured
    with ``Qubit.measure`` (``together``: a batch at once with
    ``ctx.measure_all``), or, ``measured``, by ``create_epr(measure=...)``
    and ``recv_epr(measure=...)``. ``b`` sends its outcomes back; ``a``
    returns the counts of equal outcomes per basis ``{"Z": [equal, total],
    "X": [...]}``. For a Werner pair of fidelity F (Phi+), P(equal) =
    (1 + p)/2 in both bases, p = (4F - 1)/3."""
    sizes = [(("Z", "X")[k % 2], min(batch, n - start))
             for k, start in enumerate(range(0, n, batch))]

    async def creator(ctx):
        async with await ctx.connect(b, PORT) as sock:
            mine = []
            for basis, size in sizes:
                if measured:
                    mine += [(basis, x) for x in await sock.create_epr(size, measure=basis)]
                elif together:
                    halves = await sock.create_epr(size)
                    mine += [(basis, x) for x in await ctx.measure_all(halves, basis)]
                else:
                    for q in await sock.create_epr(size):
                        mine.append((basis, await q.measure(basis)))
            theirs = await sock.recv()
        counts = {"Z": [0, 0], "X": [0, 0]}
        for (basis, x), y in zip(mine, theirs):
            counts[basis][0] += x == y
            counts[basis][1] += 1
        return counts

    async def receiver(ctx):
        sock = await ctx.listen(PORT).accept()
        out = bytearray()
        for basis, size in sizes:
            if measured:
                out += bytes(await sock.recv_epr(size, measure=basis))
            elif together:
                out += bytes(await ctx.measure_all(await sock.recv_epr(size), basis))
            else:
                for q in await sock.recv_epr(size):
                    out.append(await q.measure(basis))
        await sock.send(bytes(out))
        await sock.close()

    return {a: creator, b: receiver}


def ghz_apps(rounds: int, left: str = "alice", middle: str = "repeater",
             right: str = "bob") -> dict:
    """A three-party GHZ state built from two pairs each round: ``left`` and
    ``right`` each create a pair with ``middle``, which fuses them (CNOT from
    its left half onto its right half, the right half measured in Z and the
    outcome m sent to ``right``, which applies X if m = 1): left, middle's
    left half and right then hold (|000> + |111>)/sqrt2. All three measure in
    Z (even rounds) or X (odd rounds) and report to ``middle``, which returns
    ``{"zz_ab", "zz_bc", "zz_ac", "xxx"}``: the mean of the products of +-1
    outcomes. Over two Werner pairs with p = (4F - 1)/3 each: <Z_a Z_b> =
    <Z_b Z_c> = p, <Z_a Z_c> = p^2, <X_a X_b X_c> = p^2 (each pair's Pauli
    error flips a parity with probability (1 - p)/2, independently)."""

    async def end(ctx, peer_is_right: bool):
        async with await ctx.connect(middle, PORT + (1 if peer_is_right else 0)) as sock:
            outcomes = bytearray()
            for i in range(rounds):
                (q,) = await sock.create_epr(1)
                if peer_is_right:
                    (m,) = await sock.recv()
                    if m:
                        q.x()
                outcomes.append(await q.measure("Z" if i % 2 == 0 else "X"))
            await sock.send(bytes(outcomes))
            await sock.recv()           # the middle's word that it has everything
        return rounds

    async def left_app(ctx):
        return await end(ctx, False)

    async def right_app(ctx):
        return await end(ctx, True)

    async def middle_app(ctx):
        ls, rs = ctx.listen(PORT), ctx.listen(PORT + 1)
        sa, sc = await ls.accept(), await rs.accept()
        mine = []
        for i in range(rounds):
            (qa,) = await sa.recv_epr(1)
            (qc,) = await sc.recv_epr(1)
            qa.cnot(qc)
            await sc.send(bytes([await qc.measure("Z")]))
            mine.append(await qa.measure("Z" if i % 2 == 0 else "X"))
        a, c = await sa.recv(), await sc.recv()
        await sa.send(b"!")
        await sc.send(b"!")
        s = {"zz_ab": 0, "zz_bc": 0, "zz_ac": 0, "xxx": 0}
        for i in range(rounds):
            sa_, sb_, sc_ = (1 - 2 * a[i], 1 - 2 * mine[i], 1 - 2 * c[i])
            if i % 2 == 0:
                s["zz_ab"] += sa_ * sb_
                s["zz_bc"] += sb_ * sc_
                s["zz_ac"] += sa_ * sc_
            else:
                s["xxx"] += sa_ * sb_ * sc_
        nz, nx = (rounds + 1) // 2, rounds // 2
        return {k: v / (nx if k == "xxx" else nz) for k, v in s.items()} | {"z": nz, "x": nx}

    return {left: left_app, middle: middle_app, right: right_app}


APPS = teleport_apps(N_TELEPORT)
