from domains.speech.domain import SpeechDomain

__all__ = ["SpeechDomain"]
