
# --- quantum state engine: gates, states, Kraus channels, Bell-diagonal pairs, engine ---
from qstack.physical import gates  # noqa: E402,F401  (gate matrices: gates.CNOT, gates.rx(...))
from qstack.physical.bell_diagonal import (  # noqa: E402,F401
    PAULI_TO_BELL_MASK, BellDiagonal, swap_average, swap_bell_diagonal,
)
from qstack.physical.channels_kraus import (  # noqa: E402,F401
    InvalidParameterError, amplitude_damping, bit_flip, dephasing, depolarizing,
    pauli_channel, pauli_twirl, phase_flip, t1t2_decay,
)
from qstack.physical.engine import QuantumEngine, Qubit, QubitError  # noqa: E402,F401
from qstack.physical.states import (  # noqa: E402,F401
    BELL_NAMES, PHI_MINUS, PHI_PLUS, PSI_MINUS, PSI_PLUS, bell_dm, bell_state,
    fidelity, is_valid_density_matrix, ket, partial_trace, plus_theta, trace_distance,
)
