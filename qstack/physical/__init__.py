
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

# --- photonics: sources, channels, detectors, memories, linear optics, pulse and attempt kernels ---
from qstack.physical.attempts import (  # noqa: E402,F401
    HeraldOutcome, attempts_until_herald_reference, sample_attempts_many,
    sample_attempts_until_herald, sample_herald, sample_herald_reference,
)
from qstack.physical.detectors import ThresholdDetector, non_paralysable_rate, squash  # noqa: E402,F401
from qstack.physical.fibre import FibreChannel  # noqa: E402,F401
from qstack.physical.freespace import FreeSpaceChannel, SatelliteDownlink, slant_range_km  # noqa: E402,F401
from qstack.physical.memory import QuantumMemory  # noqa: E402,F401
from qstack.physical.optics import FrequencyConverter, LinearOpticsBSM  # noqa: E402,F401
from qstack.physical.pulses import (  # noqa: E402,F401
    PulseEvents, PulseTrain, PulseTrainParams, class_statistics, expected_gain, expected_qber,
    simulate_pulses,
)
from qstack.physical.sources import SinglePhotonSource, SPDCSource, WeakCoherentSource  # noqa: E402,F401
